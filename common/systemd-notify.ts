/**
 * systemd's readiness protocol (sd_notify(3)) for the `Type=notify` units in packaging/systemd/:
 * one datagram per state change to the socket systemd names in $NOTIFY_SOCKET. Started any other
 * way (no $NOTIFY_SOCKET) the daemons send nothing and never load the native addon.
 */
import { describeError } from './errors.js';
import type { Logger } from './logger.js';

export type NotifyState = 'READY=1' | 'RELOADING=1' | 'STOPPING=1';

/** Sends one datagram to a unix socket path ('@name': abstract); throws on failure. */
export type DatagramSender = (socketPath: string, message: string) => void;

export type Notifier = (state: NotifyState) => void;

async function nativeSender(): Promise<DatagramSender> {
  // Node has no unix datagram sockets: the addon sends (native/addon.cc notifyDatagram).
  const { loadAddon } = await import('./native-addon.js');
  const addon = loadAddon();
  return (path, message) => addon.notifyDatagram(path, message);
}

/**
 * Reads $NOTIFY_SOCKET once and removes it from the environment, so that the programs a daemon
 * starts (the namespace helper, site hooks, tar2sqfs) cannot speak for it. A missing addon fails
 * here, at start; a failed send is logged, never fatal (systemd then fails the start by its
 * timeout, and the log says why).
 */
export async function systemdNotifier(
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
  loadSender: () => Promise<DatagramSender> = nativeSender,
): Promise<Notifier> {
  const socketPath = env.NOTIFY_SOCKET;
  delete env.NOTIFY_SOCKET;
  if (socketPath === undefined || socketPath === '') return () => {};
  const send = await loadSender();
  return (state) => {
    try {
      send(socketPath, state);
    } catch (e) {
      log.error({ err: describeError(e), socket: socketPath, state }, 'cannot notify systemd');
    }
  };
}
