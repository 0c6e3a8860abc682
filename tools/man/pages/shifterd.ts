/** shifterd(1): its options are the commander program shifterd parses with. */
import { shifterdProgram } from '../../../node-daemon/daemon-command-line.js';
import { optionItems } from '../commander-items.js';
import { items, text, type ManPage } from '../roff.js';

export function shifterdPage(): ManPage {
  const program = shifterdProgram();
  return {
    name: 'shifterd',
    section: 1,
    summary: 'the Shifter node daemon: builds container environments for shifter launches',
    synopsis: ['shifterd --config FILE [options]'],
    sections: [
      {
        heading: 'Description',
        blocks: [
          text(
            'shifterd runs as root on each compute node, in the foreground, logging pino JSON lines on stdout. ' +
              'shifter(1) sends it each launch over a unix socket; shifterd identifies the caller by the kernel ' +
              '(SO_PEERCRED), looks the image up, builds or reuses a locked user and mount namespace and hands it ' +
              'back. Containers keep their own namespaces: restarting shifterd leaves running ones untouched.',
          ),
          text('Check a node with shifter-node-check(8).'),
        ],
      },
      { heading: 'Options', blocks: [items(optionItems(program))] },
      {
        heading: 'Signals',
        blocks: [
          items([
            { term: 'SIGHUP', text: 'reload udiRoot.conf; a bad new file is logged and the old one kept' },
            { term: 'SIGTERM, SIGINT', text: 'stop serving, close the sockets and exit 0' },
          ]),
        ],
      },
      {
        heading: 'Files',
        blocks: [
          items([
            { term: '/etc/shifter/udiRoot.conf', text: 'the configuration (root-owned, not group or world writable)' },
            { term: '/run/shifter/shifterd.sock', text: 'the launch socket' },
            { term: '/run/shifter/shifterd-admin.sock', text: 'the admin socket (root only)' },
          ]),
        ],
      },
      { heading: 'See also', blocks: [text('shifter(1), shifter-node-check(8), udiRoot.conf(5)')] },
    ],
  };
}
