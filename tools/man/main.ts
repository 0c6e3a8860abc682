/**
 * Writes the man pages into a directory (scripts/build-man.mjs: dist/man), each file complete
 * before it appears. The date is $SOURCE_DATE_EPOCH's when set (reproducible packages), else today.
 *   node dist/tools/man/main.js OUTDIR
 */
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from '../../common/atomic-write.js';
import { VERSION_LINE } from '../../common/version.js';
import { allManPages, manPagePath } from './pages.js';
import { renderManPage } from './roff.js';

const out = process.argv[2];
if (out === undefined) {
  process.stderr.write('usage: node dist/tools/man/main.js OUTDIR\n');
  process.exit(2);
}
const epoch = process.env.SOURCE_DATE_EPOCH;
const date = (epoch === undefined ? new Date() : new Date(Number(epoch) * 1000)).toISOString().slice(0, 10);
for (const page of allManPages()) {
  const path = join(out, manPagePath(page));
  mkdirSync(dirname(path), { recursive: true });
  await writeFileAtomic(path, renderManPage(page, VERSION_LINE, date));
}
// The Commander programs hold stdin open through shifterimg's streams.
process.exit(0);
