/**
 * `shifter-gateway`'s command line, defined once: main.ts parses with it and the man page
 * (tools/man/) lists its options, so the two cannot drift.
 */
import { Command, InvalidArgumentError } from 'commander';
import { VERSION_LINE } from '../common/version.js';

export interface Listen {
  host: string;
  port: number;
}

export interface GatewayArgs {
  config?: string;
  listen: Listen;
}

export const DEFAULT_LISTEN: Listen = { host: '0.0.0.0', port: 8000 };

/** `HOST:PORT`, `[v6]:PORT` or `:PORT` (all addresses); undefined when it is none of those. */
export function parseListenText(s: string): Listen | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) return undefined;
  return { host: m[1] ?? (m[2] || DEFAULT_LISTEN.host), port };
}

function listenOption(s: string): Listen {
  const listen = parseListenText(s);
  if (listen === undefined) throw new InvalidArgumentError('not HOST:PORT (e.g. 127.0.0.1:8000 or 0.0.0.0:8000)');
  return listen;
}

export function gatewayProgram(): Command {
  return new Command('shifter-gateway')
    .description('The Shifter image gateway: REST API, registry pulls, conversion to squashfs.')
    .version(VERSION_LINE, '--version', 'print the version and exit')
    .option(
      '-c, --config <file>',
      'imagemanager.json to read (default: $GWCONFIG, else /etc/shifter/imagemanager.json)',
    )
    .option(
      '-l, --listen <host:port>',
      'address and port to serve on (default 0.0.0.0:8000; match the imageGateway URL of udiRoot.conf)',
      listenOption,
    )
    .helpOption('-h, --help', 'show this help');
}

/** Parses argv; help and version print and exit 0, a bad command line prints one line and exits 2. */
export function parseGatewayArgs(argv: readonly string[]): GatewayArgs {
  const program = gatewayProgram()
    .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2))
    .configureOutput({
      outputError: (s, write) => write(`shifter-gateway: ${s.replace(/^error: /, '')}`),
    });
  program.parse([...argv], { from: 'user' });
  const opts = program.opts<Partial<GatewayArgs>>();
  return { config: opts.config, listen: opts.listen ?? DEFAULT_LISTEN };
}
