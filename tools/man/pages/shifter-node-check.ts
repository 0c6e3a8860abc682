/** shifter-node-check(8): its options are the commander program it parses with. */
import { nodeCheckProgram } from '../../../node-daemon/health/node-check-program.js';
import { optionItems } from '../commander-items.js';
import { example, items, text, type ManPage } from '../roff.js';

export function nodeCheckPage(): ManPage {
  const program = nodeCheckProgram();
  return {
    name: 'shifter-node-check',
    section: 8,
    summary: 'check that a node can run Shifter containers',
    synopsis: ['shifter-node-check [--config FILE] [options]'],
    sections: [
      {
        heading: 'Description',
        blocks: [
          text(
            'Run as root on a compute node. Each check prints one line, ok or FAIL with what to do, and the ' +
              'program exits 0 only when all pass, 1 otherwise (2: a bad command line). Nothing is changed.',
          ),
          items([
            { term: 'configuration', text: 'udiRoot.conf can be read' },
            { term: 'shifterd launch socket', text: 'shifterd answers a launch of shifter --version (runs nothing)' },
            { term: 'shifterd admin socket', text: "shifterd's admin API answers its Status call" },
            { term: 'image gateway', text: 'one of imageGateway answers HTTP' },
            { term: 'munge', text: 'a credential made with mungeSocketPath decodes to this user' },
            { term: 'loop devices', text: '/dev/loop-control is a usable character device' },
            { term: 'squashfs', text: 'the kernel lists squashfs in /proc/filesystems' },
            { term: 'FUSE', text: 'only with lazyImageCache: /dev/fuse is usable and the kernel lists fuse' },
          ]),
        ],
      },
      { heading: 'Options', blocks: [items(optionItems(program))] },
      {
        heading: 'Example',
        blocks: [
          example([
            '# shifter-node-check',
            'ok   configuration /etc/shifter/udiRoot.conf: read',
            'FAIL munge /run/munge/munge.socket.2: ...; start munged (systemctl start munge) ...',
          ]),
        ],
      },
      { heading: 'See also', blocks: [text('shifterd(1), udiRoot.conf(5)')] },
    ],
  };
}
