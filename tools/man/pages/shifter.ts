/** shifter(1): its options are the table shifterd parses `shifter`'s command line with. */
import { SHIFTER_OPTIONS, shifterOptionTerm } from '../../../node-daemon/command/options.js';
import { example, items, text, type ManPage } from '../roff.js';

export function shifterPage(): ManPage {
  return {
    name: 'shifter',
    section: 1,
    summary: 'run a command inside a container image on this node',
    synopsis: ['shifter [options] [--] [command [args...]]'],
    sections: [
      {
        heading: 'Description',
        blocks: [
          text(
            'shifter runs a command inside a container image that shifterimg(1) pulled, as you, with your files. ' +
              'It asks shifterd(1), the daemon on the node, to prepare the image and enters it in place: the same ' +
              'process, signals and terminal, so batch systems and MPI see the process they started. Options stop ' +
              'at the first argument that is not one; without a command the image ENTRYPOINT/CMD runs, else /bin/sh.',
          ),
          text(
            '--help and --version work where no shifterd runs. Anything else needs shifterd: when it does not ' +
              "answer, shifter says so in one line and names the site's contact (siteContact in udiRoot.conf).",
          ),
        ],
      },
      {
        heading: 'Options',
        blocks: [
          items(
            SHIFTER_OPTIONS.filter((o) => o.hidden !== true).map((o) => ({
              term: shifterOptionTerm(o),
              text: o.description,
            })),
          ),
        ],
      },
      {
        heading: 'Environment',
        blocks: [
          items([
            { term: 'SHIFTER_IMAGETYPE, SHIFTER_IMAGE', text: 'together, the image when --image is not given' },
            { term: 'SHIFTER_IMAGEREQUEST', text: 'the image when --image is not given and the two above are not set' },
            { term: 'SHIFTER_VOLUME', text: 'volumes when no --volume is given' },
            { term: 'SHIFTER_MODULE', text: 'modules when no --module is given' },
            {
              term: 'SLURM_SPANK_SHIFTER_*',
              text: 'the same, as the Slurm plugin sets them, when the above are unset',
            },
            { term: 'SHIFTER_UDIROOT_CONF', text: 'the udiRoot.conf to read shifterdSocket and siteContact from' },
            { term: 'SHIFTERD_SOCKET', text: "shifterd's socket, before udiRoot.conf's shifterdSocket" },
          ]),
        ],
      },
      {
        heading: 'Exit status',
        blocks: [
          text(
            "The command's own exit status; 1 when shifter or shifterd refused or failed (one line on stderr), " +
              '126 when the command cannot be executed, 127 when it is not found in the image.',
          ),
        ],
      },
      {
        heading: 'Examples',
        blocks: [
          example([
            'shifter --image=me/solver:2.1 --volume=$SCRATCH/run1:/data python3 sim.py',
            'shifter --image=ubuntu:22.04 --entrypoint',
            'srun -n 64 shifter --image=me/solver:2.1 ./solver',
          ]),
        ],
      },
      { heading: 'Files', blocks: [items([{ term: '/etc/shifter/udiRoot.conf', text: 'the site configuration' }])] },
      { heading: 'See also', blocks: [text('shifterimg(1), shifterd(1), udiRoot.conf(5)')] },
    ],
  };
}
