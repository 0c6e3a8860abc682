/** Entry point of bin/shifterimg; the program itself is in program.ts. */
import { main } from './program.js';

// Explicit exit: a kept-alive HTTP connection must not hold the prompt back.
process.exit(
  await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin }),
);
