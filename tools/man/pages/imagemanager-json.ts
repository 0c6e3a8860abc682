/** imagemanager.json(5): the keys and their lines are the parser's own tables (gateway/config/imagemanager-keys.ts). */
import {
  CHUNK_ADMISSION_KEY_DOCS,
  HTTP_SERVER_KEY_DOCS,
  LIMIT_KEY_DOCS,
  LOCATION_KEY_DOCS,
  PLATFORM_KEY_DOCS,
  PULL_POLICY_KEY_DOCS,
  TOP_KEY_DOCS,
  UNUSED_TOP_KEY_DOCS,
  type KeyTable,
} from '../../../gateway/config/imagemanager-keys.js';
import { example, items, text, type Block, type ManPage, type ManSection } from '../roff.js';

function keys(table: KeyTable): Block {
  return items(Object.entries(table).map(([term, line]) => ({ term, text: line })));
}

function section(heading: string, intro: string, table: KeyTable): ManSection {
  return { heading, blocks: [text(intro), keys(table)] };
}

export function imagemanagerJsonPage(): ManPage {
  return {
    name: 'imagemanager.json',
    section: 5,
    summary: 'configuration of the Shifter image gateway',
    synopsis: ['/etc/shifter/imagemanager.json'],
    sections: [
      {
        heading: 'Description',
        blocks: [
          text(
            'A JSON object, read by shifter-gateway(1) at start from --config, else $GWCONFIG, else ' +
              '/etc/shifter/imagemanager.json. Upstream Shifter files keep working. An unknown key is a warning in ' +
              'the log; a bad value stops the gateway with one line naming the key and the fix.',
          ),
        ],
      },
      section('Keys', 'At the top level:', TOP_KEY_DOCS),
      section('Pull policy', 'At the top level, what users may pull and for how long:', PULL_POLICY_KEY_DOCS),
      section('HTTP server limits', 'At the top level, what one client may hold:', HTTP_SERVER_KEY_DOCS),
      section(
        'Chunk admission',
        'At the top level, how many lazy-cache answers the gateway gives at once (node-daemon lazy images):',
        CHUNK_ADMISSION_KEY_DOCS,
      ),
      section('Locations', 'Each value of Locations (a registry, by host name):', LOCATION_KEY_DOCS),
      section('Platforms', 'Each value of Platforms (a system, by its udiRoot.conf system name):', PLATFORM_KEY_DOCS),
      section('Limits', 'The Limits object; byte values are numbers or strings like "64G":', LIMIT_KEY_DOCS),
      section('Unused keys', 'Accepted silently, for upstream files:', UNUSED_TOP_KEY_DOCS),
      {
        heading: 'Example',
        blocks: [
          example([
            '{',
            '  "DefaultImageLocation": "registry-1.docker.io",',
            '  "CacheDirectory": "/var/lib/shifter/cache",',
            '  "ExpandDirectory": "/var/lib/shifter/expand",',
            '  "Locations": { "registry-1.docker.io": { "remotetype": "dockerv2" } },',
            '  "Platforms": {',
            '    "mycluster": {',
            '      "mungeSocketPath": "/run/munge/munge.socket.2",',
            '      "accesstype": "local",',
            '      "admins": ["root"],',
            '      "local": { "imageDir": "/global/shifter/images" }',
            '    }',
            '  }',
            '}',
          ]),
        ],
      },
      { heading: 'See also', blocks: [text('shifter-gateway(1), udiRoot.conf(5)')] },
    ],
  };
}
