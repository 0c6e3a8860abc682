/** Every man page the build writes (dist/man/man<section>/<name>.<section>). */
import type { ManPage } from './roff.js';
import { imagemanagerJsonPage } from './pages/imagemanager-json.js';
import { gatewayPage } from './pages/shifter-gateway.js';
import { nodeCheckPage } from './pages/shifter-node-check.js';
import { shifterPage } from './pages/shifter.js';
import { shifterdPage } from './pages/shifterd.js';
import { shifterimgPage } from './pages/shifterimg.js';
import { udirootConfPage } from './pages/udiroot-conf.js';

export function allManPages(): ManPage[] {
  return [
    shifterPage(),
    shifterimgPage(),
    shifterdPage(),
    gatewayPage(),
    nodeCheckPage(),
    udirootConfPage(),
    imagemanagerJsonPage(),
  ];
}

export function manPagePath(page: ManPage): string {
  return `man${page.section}/${page.name}.${page.section}`;
}
