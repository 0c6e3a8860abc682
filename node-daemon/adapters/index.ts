export {
  loadAddon,
  nativeDir,
  type NativeAddon,
  type PeerCredentials,
  type ReceivedMessage,
} from '../../common/native-addon.js';
export { attachImage } from './attach-image.js';
export { attachLocal, type LocalRootUser } from './attach-local.js';
export { createEnvironment } from './create-environment.js';
export type * from './environment-spec.js';
export type { ImageMount, LocalRootMount, RootMount } from './image-mount.js';
export { encodeSpec } from './spec-encoding.js';
export { runUserHook, type UserHookRun } from './run-userhook.js';
export { listDeviceDir, type HostDevEntry } from './host-devices.js';
export { loopDevicesReading, moveLoopDevice } from './loop-devices.js';
