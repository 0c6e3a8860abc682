/** shifter-gateway(1): its options are the commander program the gateway parses with. */
import { gatewayProgram } from '../../../gateway/command-line.js';
import { optionItems } from '../commander-items.js';
import { items, text, type ManPage } from '../roff.js';

export function gatewayPage(): ManPage {
  const program = gatewayProgram();
  return {
    name: 'shifter-gateway',
    section: 1,
    summary: 'the Shifter image gateway: REST API, registry pulls, conversion to squashfs',
    synopsis: ['shifter-gateway [--config FILE] [--listen HOST:PORT]'],
    sections: [
      {
        heading: 'Description',
        blocks: [
          text(
            'shifter-gateway serves the image API that shifterimg(1) and shifterd(1) use: it pulls images from ' +
              "registries, converts them to squashfs and writes them to each system's imageDir. It logs pino JSON " +
              'lines on stdout. A bad configuration or command line prints one line and exits 2; SIGTERM and SIGINT ' +
              'stop accepting requests and leave running pulls to resume at the next start.',
          ),
        ],
      },
      { heading: 'Options', blocks: [items(optionItems(program))] },
      {
        heading: 'Environment',
        blocks: [
          items([
            { term: 'GWCONFIG', text: 'the configuration file when --config is not given' },
            { term: 'SHIFTER_LOG_LEVEL', text: 'overrides LogLevel' },
          ]),
        ],
      },
      {
        heading: 'Files',
        blocks: [items([{ term: '/etc/shifter/imagemanager.json', text: 'the configuration' }])],
      },
      { heading: 'See also', blocks: [text('shifterimg(1), imagemanager.json(5)')] },
    ],
  };
}
