/** udiRoot.conf(5): the keys and their lines are the parser's own tables (common/config/udiroot-conf.ts). */
import { DEPRECATED_KEYS, KEY_DESCRIPTIONS, MODULE_SETTING_DESCRIPTIONS } from '../../../common/config/udiroot-conf.js';
import { example, items, text, type ManPage } from '../roff.js';

export function udirootConfPage(): ManPage {
  return {
    name: 'udiRoot.conf',
    section: 5,
    summary: 'Shifter site configuration, read by shifter, shifterd and shifterimg',
    synopsis: ['/etc/shifter/udiRoot.conf'],
    sections: [
      {
        heading: 'Description',
        blocks: [
          text(
            'One key=value per line, key and value trimmed, keys case-sensitive, no quoting. A line whose first ' +
              'non-blank character is # is a comment; a value ending in a backslash continues on the next line. ' +
              'Lists are space-separated and list keys given twice accumulate. An unknown key is a warning; a bad ' +
              'number or boolean is an error naming the line. Booleans are 0 or 1 (yes/no, true/false also read).',
          ),
          text(
            'The file is found at $SHIFTER_UDIROOT_CONF, else /etc/shifter/udiRoot.conf. shifterd refuses a file ' +
              'that is not root-owned or that others may write.',
          ),
        ],
      },
      {
        heading: 'Keys',
        blocks: [items(Object.entries(KEY_DESCRIPTIONS).map(([term, line]) => ({ term, text: line })))],
      },
      {
        heading: 'Modules',
        blocks: [
          text(
            'A module is a set of keys module_<name>_<setting> (the name cannot contain _); users load modules ' +
              'with shifter --module, defaultModules loads them otherwise. Settings:',
          ),
          items(Object.entries(MODULE_SETTING_DESCRIPTIONS).map(([term, line]) => ({ term, text: line }))),
        ],
      },
      {
        heading: 'Deprecated keys',
        blocks: [text(`Accepted with a warning and ignored: ${DEPRECATED_KEYS.join(', ')}.`)],
      },
      {
        heading: 'Example',
        blocks: [
          example([
            'system=mycluster',
            'imageGateway=http://imagegw.example.org:8000',
            'imagePath=/global/shifter/images',
            'siteFs=/home:/home;/global/scratch:/scratch',
            'siteEnv=SHIFTER_RUNTIME=1',
            'siteContact=hpc-help@example.org',
          ]),
        ],
      },
      { heading: 'See also', blocks: [text('shifter(1), shifterd(1), shifterimg(1), imagemanager.json(5)')] },
    ],
  };
}
