import test from 'ava';
import { ShifterError } from '../../../common/errors.js';
import { expandCountList, expandHostList, renderHostsfile } from '../../../node-daemon/slurm/hostlist.js';

test("Slurm's compressed host lists expand in order, keeping zero padding", (t) => {
  t.deepEqual(expandHostList('localhost'), ['localhost']);
  t.deepEqual(expandHostList('nid[0001-0003,7],login1'), ['nid0001', 'nid0002', 'nid0003', 'nid7', 'login1']);
  t.deepEqual(expandHostList('r[1-2]n[08-09]'), ['r1n08', 'r1n09', 'r2n08', 'r2n09']);
  t.deepEqual(expandHostList('gpu[1-2]-ib,cpu5'), ['gpu1-ib', 'gpu2-ib', 'cpu5']);
});

test('a malformed or huge host list is an error naming it', (t) => {
  for (const text of ['', 'n[1-', 'n[3-1]', 'n[a-b]', 'n]1[', 'n[[1]]', 'a b', 'n[1-99999999]']) {
    const r = expandHostList(text);
    t.true(r instanceof ShifterError, text);
    t.regex((r as ShifterError).message, /the node list .* is not in Slurm's format/, text);
  }
});

test('count lists expand their (xN) repeats', (t) => {
  t.deepEqual(expandCountList('2(x3),1'), [2, 2, 2, 1]);
  t.deepEqual(expandCountList('4'), [4]);
  t.true(expandCountList('2(x)') instanceof ShifterError);
  t.true(expandCountList('') instanceof ShifterError);
});

test('the hostsfile has one line per slot, nodes in list order', (t) => {
  t.is(renderHostsfile('n[1-3]', '2,1(x2)'), 'n1\nn1\nn2\nn3\n');
  const mismatch = renderHostsfile('n[1-3]', '2');
  t.true(mismatch instanceof ShifterError);
  t.regex((mismatch as ShifterError).message, /has 3 node\(s\) but the counts '2' 1/);
});
