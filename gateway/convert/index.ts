export { convertLayersToSquashfs } from './squashfs.js';
export type { LayerFile, ConversionOptions, ConversionReport, DroppedEntry } from './squashfs.js';
