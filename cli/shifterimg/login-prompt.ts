/**
 * Asks for a registry username and password. On a terminal, as upstream: `<location> username: `
 * and `<location> password: ` on stderr, the password read with echo off (raw mode, restored on
 * every way out, Ctrl-C included). Otherwise (a script, a pipe) the first two lines of stdin are
 * the username and the password, with no prompt.
 */
import { ShifterError } from '../../common/errors.js';
import type { Output } from './command-context.js';

export interface LoginAnswer {
  readonly username: string;
  readonly password: string;
}

export interface PromptInput extends NodeJS.ReadableStream {
  readonly isTTY?: boolean;
  setRawMode?(mode: boolean): unknown;
}

const CTRL_C = '\u0003';
const CTRL_D = '\u0004';
const BACKSPACES = new Set(['\u007f', '\b']);

export class PromptInterrupted extends Error {}

function readAll(input: PromptInput): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    input.setEncoding('utf8');
    input.on('data', (d: string) => {
      text += d;
    });
    input.once('end', () => resolve(text));
    input.once('error', reject);
  });
}

/** Reads up to the end of a line; `raw`: the terminal sends keys one by one, which are not echoed. */
function readLine(input: PromptInput, raw: boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    let line = '';
    const done = (err: Error | null) => {
      input.off('data', onData);
      input.off('end', onEnd);
      input.pause();
      if (err) reject(err);
      else resolve(line);
    };
    const onEnd = () => done(line === '' ? new ShifterError('BAD_ARGUMENT', 'no answer (end of input)') : null);
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') return done(null);
        if (raw && ch === CTRL_C) return done(new PromptInterrupted());
        if (raw && ch === CTRL_D && line === '') return onEnd();
        if (raw && BACKSPACES.has(ch)) line = line.slice(0, -1);
        else line += ch;
      }
    };
    input.setEncoding('utf8');
    input.on('data', onData);
    input.once('end', onEnd);
    input.resume();
  });
}

function checked(answer: LoginAnswer, location: string): LoginAnswer {
  if (answer.username === '' || answer.username.includes(':')) {
    throw new ShifterError(
      'BAD_ARGUMENT',
      `the username for ${location} must be non-empty and without ":" (the gateway splits user:password at the first ":")`,
    );
  }
  if (answer.password === '') throw new ShifterError('BAD_ARGUMENT', `the password for ${location} is empty`);
  return answer;
}

export async function askLogin(location: string, input: PromptInput, prompts: Output): Promise<LoginAnswer> {
  if (input.isTTY !== true || !input.setRawMode) {
    const [username = '', password = ''] = (await readAll(input)).split(/\r?\n/);
    if (username === '' && password === '') {
      throw new ShifterError(
        'BAD_ARGUMENT',
        `no login for ${location} on standard input: give the username and the password on two lines, ` +
          'or run shifterimg login on a terminal',
      );
    }
    return checked({ username, password }, location);
  }
  prompts.write(`${location} username: `);
  const username = (await readLine(input, false)).trim();
  prompts.write(`${location} password: `);
  const setRaw = input.setRawMode.bind(input);
  const restore = () => setRaw(false);
  // A signal would end the process with the terminal still not echoing.
  const onTerm = () => {
    restore();
    process.exit(143);
  };
  const onHup = () => {
    restore();
    process.exit(129);
  };
  setRaw(true);
  process.once('SIGTERM', onTerm);
  process.once('SIGHUP', onHup);
  try {
    const password = await readLine(input, true);
    return checked({ username, password }, location);
  } finally {
    restore();
    process.off('SIGTERM', onTerm);
    process.off('SIGHUP', onHup);
    prompts.write('\n');
  }
}
