/** The udiRoot.conf lines that enable a module tree, as the tools print them. Pure. */
import type { ModuleKind } from '../../common/module-manifest.js';

/** Where shifterd shows module `<name>` inside the container. */
export function moduleMountPoint(name: string): string {
  return `/opt/udiImage/modules/${name}`;
}

/** The directory every copied file's RUNPATH names (so dependencies never come from the image). */
export function moduleDepDir(name: string): string {
  return `${moduleMountPoint(name)}/lib64/dep`;
}

/** The device nodes a GPU module asks the runtime for (`module_<name>_devices`). */
export const GPU_DEVICES = [
  '/dev/nvidiactl',
  '/dev/nvidia-uvm',
  '/dev/nvidia-uvm-tools',
  '/dev/nvidia-modeset',
  '/dev/nvidia*',
];

export function configLines(kind: ModuleKind, name: string, dest: string, hasTools: boolean): string[] {
  const root = moduleMountPoint(name);
  const prepend = [`LD_LIBRARY_PATH=${root}/lib64:${root}/lib64/dep`];
  if (hasTools) prepend.push(`PATH=${root}/bin`);
  const lines = [`module_${name}_copyPath=${dest}`, `module_${name}_siteEnvPrepend=${prepend.join(' ')}`];
  if (kind === 'gpu') lines.push(`module_${name}_devices=${GPU_DEVICES.join(';')}`);
  return lines;
}
