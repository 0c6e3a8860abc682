/** shifterimg(1): its options and commands are the commander program shifterimg parses with. */
import { shifterimgProgram } from '../../../cli/shifterimg/program.js';
import { EXIT_CODES_HELP } from '../../../cli/shifterimg/exit-codes.js';
import { commandItems, optionItems } from '../commander-items.js';
import { example, items, text, type Item, type ManPage } from '../roff.js';

const nowhere = { write: () => true };

/** `  3    the image gateway could not be reached` lines of the help text. */
function exitCodeItems(): Item[] {
  return [...EXIT_CODES_HELP.matchAll(/^\s+(\d+)\s+(.+)$/gm)].map((m) => ({ term: m[1], text: m[2] }));
}

export function shifterimgPage(): ManPage {
  const program = shifterimgProgram({ stdout: nowhere, stderr: nowhere, stdin: process.stdin }, () => undefined);
  return {
    name: 'shifterimg',
    section: 1,
    summary: 'pull, list and look up container images through the Shifter image gateway',
    synopsis: [`shifterimg ${program.usage()}`],
    sections: [
      {
        heading: 'Description',
        blocks: [
          text(program.description()),
          text(
            'Images are written [type:]tag, type one of docker, custom, id, local (default: defaultImageType from ' +
              'udiRoot.conf, usually docker); a docker tag without a version gets :latest. Requests carry a munge ' +
              'credential: munged must run on the node.',
          ),
        ],
      },
      { heading: 'Commands', blocks: [items(commandItems(program))] },
      { heading: 'Options', blocks: [items(optionItems(program))] },
      { heading: 'Exit status', blocks: [items(exitCodeItems())] },
      {
        heading: 'Examples',
        blocks: [
          example([
            'shifterimg pull docker:ubuntu:22.04',
            'shifterimg -u alice,bob pull registry.example.org:5000/team/app:1.0',
            'shifterimg login registry.example.org',
            'shifterimg images',
          ]),
        ],
      },
      {
        heading: 'Files',
        blocks: [
          items([
            { term: '/etc/shifter/udiRoot.conf', text: 'system and imageGateway (or $SHIFTER_UDIROOT_CONF)' },
            { term: '~/.udiRoot/.cred', text: 'saved registry logins (mode 0600)' },
          ]),
        ],
      },
      { heading: 'See also', blocks: [text('shifter(1), shifter-gateway(1), udiRoot.conf(5)')] },
    ],
  };
}
