/**
 * The shifterimg command line: pull, list and look up images through the image gateway (upstream src/shifterimg.c).
 * Errors end as one line on stderr and a documented exit code (exit-codes.ts), never a stack trace.
 */
import { Command, CommanderError } from 'commander';
import { userInfo } from 'node:os';
import { describeError, isShifterError } from '../../common/errors.js';
import { GatewayClient, type PullAcl } from '../../common/gateway-client/client.js';
import { mungeEncode } from '../../common/munge.js';
import { readUdiRootConf, resolveUdiRootConfPath } from '../../common/config/udiroot-file.js';
import { requireUdiRootKeys } from '../../common/config/udiroot-conf.js';
import type { CommandContext, LoginContext, Output } from './command-context.js';
import { readCredentialFile } from './credential-file.js';
import { runAutoexpire, runExpire } from './commands/expire.js';
import { runImages } from './commands/images.js';
import { runLogin, runLogout } from './commands/login.js';
import { runLookup } from './commands/lookup.js';
import { runPull } from './commands/pull.js';
import { runQueue } from './commands/queue.js';
import { VERSION_LINE } from '../../common/version.js';
import { EXIT, EXIT_CODES_HELP, exitCodeFor, type ExitCode } from './exit-codes.js';
import { getentLookup, resolveIds, splitIdLists } from './identity-lists.js';
import { PromptInterrupted, type PromptInput } from './login-prompt.js';
import { authorizedLocationsPayload } from './registry-logins.js';

interface GlobalOptions {
  config?: string;
  verbose?: boolean;
  user?: string[];
  group?: string[];
}

export interface Streams {
  stdout: Output;
  stderr: Output;
  /** Where login reads the username and password. */
  stdin: PromptInput;
}

const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

async function loadLoginContext(opts: GlobalOptions, streams: Streams): Promise<LoginContext> {
  const path = resolveUdiRootConfPath(opts.config);
  // shifterimg runs unprivileged and only reads gateway settings, so the root-owner check is not applied.
  const { config, warnings } = await readUdiRootConf(path);
  for (const w of warnings) streams.stderr.write(`shifterimg: warning: ${w.message}\n`);
  requireUdiRootKeys(config, ['system', 'imageGateway']);
  const user = userInfo();
  return {
    config,
    system: config.system as string,
    home: user.homedir,
    uid: user.uid,
    stdout: streams.stdout,
    stderr: streams.stderr,
  };
}

/**
 * Every request's credential carries the saved registry logins of this system (upstream sends
 * them with every request too). The file is checked before any request (a file others could
 * read is a config problem, exit 2); the logins are decoded once per run, as a pull polls every
 * half second.
 */
async function credentialWithLogins(login: LoginContext): Promise<() => Promise<string>> {
  const saved = await readCredentialFile(login.home, login.uid);
  const socket = login.config.mungeSocketPath;
  let payload: Promise<string> | undefined;
  const decode = async () => {
    const decoded = await authorizedLocationsPayload(saved, login.system, login.uid, socket);
    for (const w of decoded.warnings) login.stderr.write(`shifterimg: warning: ${w}\n`);
    return decoded.payload;
  };
  return async () => mungeEncode(await (payload ??= decode()), { socket });
}

async function loadContext(opts: GlobalOptions, streams: Streams): Promise<CommandContext> {
  const login = await loadLoginContext(opts, streams);
  const { config, system } = login;
  const verbose = opts.verbose === true;
  const client = new GatewayClient({
    gateways: config.imageGateway,
    system,
    gatewayTimeout: config.gatewayTimeout,
    configFile: config.sourceFile,
    credential: await credentialWithLogins(login),
    ...(verbose
      ? {
          onAnswer: (r) => {
            streams.stderr.write(`shifterimg: ${r.method} ${r.url} -> HTTP ${r.status}\n`);
            streams.stdout.write(`${r.body}\n`);
          },
        }
      : {}),
  });
  return { ...login, client, verbose };
}

async function pullAcl(opts: GlobalOptions): Promise<PullAcl> {
  return {
    uids: await resolveIds(splitIdLists(opts.user ?? [], 'user'), 'user', getentLookup),
    gids: await resolveIds(splitIdLists(opts.group ?? [], 'group'), 'group', getentLookup),
  };
}

/**
 * The whole command line, defined once: main parses with it and the man page (tools/man/) lists its
 * options and commands. Each command's action reports its exit code through `done`.
 */
export function shifterimgProgram(streams: Streams, done: (code: ExitCode) => void): Command {
  const program = new Command();
  program
    .name('shifterimg')
    .description('Pull, list and look up container images through the Shifter image gateway.')
    .usage('[options] <command> [image]')
    .version(VERSION_LINE, '--version', 'print the version and exit')
    .option('--config <file>', 'udiRoot.conf to read (default: $SHIFTER_UDIROOT_CONF, else /etc/shifter/udiRoot.conf)')
    .option('-v, --verbose', 'also print the raw JSON answers of the gateway')
    .option(
      '-u, --user <list>',
      'pull: users (names or uids, comma-separated; repeatable) allowed to use the image, making it private',
      collect,
    )
    .option(
      '-g, --group <list>',
      'pull: groups (names or gids, comma-separated; repeatable) allowed to use the image, making it private',
      collect,
    )
    .exitOverride()
    .configureOutput({
      writeOut: (s) => streams.stdout.write(s),
      writeErr: (s) => streams.stderr.write(s),
      outputError: (s, write) => write(`shifterimg: ${s.replace(/^error: /, '')}`),
    })
    .addHelpText(
      'after',
      `
Images are written [type:]tag, type one of docker, custom, id, local (default: defaultImageType
from udiRoot.conf, usually docker); a docker tag without a version gets :latest.
  shifterimg pull docker:ubuntu:22.04
  shifterimg -u alice,bob pull registry.example.org:5000/team/app:1.0
  shifterimg login registry.example.org     # asks for the username and password (saved in ~/.udiRoot/.cred)
${EXIT_CODES_HELP}`,
    );

  const ctx = (): Promise<CommandContext> => loadContext(program.opts<GlobalOptions>(), streams);

  program
    .command('images')
    .description('list the images available on this system')
    .action(async () => {
      done(await runImages(await ctx()));
    });
  program
    .command('lookup')
    .description('print the id of a pulled image (exit 1 if there is none)')
    .argument('<image>', 'image, e.g. docker:ubuntu:22.04')
    .action(async (image: string) => {
      done(await runLookup(await ctx(), image));
    });
  program
    .command('pull')
    .description('pull an image and follow the pull until it is ready or has failed')
    .argument('<image>', 'image, e.g. docker:ubuntu:22.04')
    .action(async (image: string) => {
      const acl = await pullAcl(program.opts<GlobalOptions>());
      done(await runPull(await ctx(), image, acl, true));
    });
  program
    .command('pullnb')
    .description('ask for a pull and print its current status once, without waiting')
    .argument('<image>', 'image, e.g. docker:ubuntu:22.04')
    .action(async (image: string) => {
      const acl = await pullAcl(program.opts<GlobalOptions>());
      done(await runPull(await ctx(), image, acl, false));
    });
  program
    .command('login')
    .description(
      'save a registry login (username, password) for this system; pulls then use it for that registry location',
    )
    .argument('[location]', "the gateway's registry location (a Locations key); default: used for every registry")
    .action(async (location: string | undefined) => {
      done(await runLogin(await loadLoginContext(program.opts<GlobalOptions>(), streams), location, streams.stdin));
    });
  program
    .command('logout')
    .description('remove the saved login of a registry location for this system (all of them without a location)')
    .argument('[location]', 'the registry location; without it every login for this system is removed')
    .action(async (location: string | undefined) => {
      done(await runLogout(await loadLoginContext(program.opts<GlobalOptions>(), streams), location));
    });
  program
    .command('queue')
    .description('list the pulls the gateway is working on')
    .action(async () => {
      done(await runQueue(await ctx()));
    });

  program
    .command('expire')
    .description('remove an image from this system (admins; users: a private image only they pulled)')
    .argument('<image>', 'image, e.g. docker:ubuntu:22.04')
    .action(async (image: string) => {
      done(await runExpire(await ctx(), image));
    });
  program
    .command('autoexpire')
    .description("admins: remove the images not used for the gateway's ImageExpirationTimeout")
    .action(async () => {
      done(await runAutoexpire(await ctx()));
    });

  return program;
}

export async function main(argv: readonly string[], streams: Streams): Promise<ExitCode> {
  let result: ExitCode = EXIT.OK;
  const program = shifterimgProgram(streams, (code) => {
    result = code;
  });
  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT.OK : EXIT.USAGE_OR_CONFIG;
    if (e instanceof PromptInterrupted) {
      streams.stderr.write('shifterimg: interrupted; no login was saved\n');
      return EXIT.INTERRUPTED;
    }
    if (isShifterError(e)) {
      streams.stderr.write(`shifterimg: ${e.message}\n`);
    } else {
      streams.stderr.write(`shifterimg: internal error (please report it): ${describeError(e)}\n`);
    }
    return exitCodeFor(e);
  }
  return result;
}
