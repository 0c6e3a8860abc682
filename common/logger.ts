/** One pino logger per process; components take child loggers named for themselves. */
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

/** Upstream's LogLevel names (imagemanager.json) mapped onto pino's. */
export function pinoLevel(level: string | undefined): LevelWithSilent {
  switch ((level ?? 'info').toLowerCase()) {
    case 'debug':
      return 'debug';
    case 'info':
      return 'info';
    case 'warn':
    case 'warning':
      return 'warn';
    case 'error':
      return 'error';
    case 'critical':
    case 'fatal':
      return 'fatal';
    case 'silent':
      return 'silent';
    default:
      return 'info';
  }
}

export function createLogger(name: string, level?: string): Logger {
  return pino({ name, level: pinoLevel(level ?? process.env.SHIFTER_LOG_LEVEL) });
}
