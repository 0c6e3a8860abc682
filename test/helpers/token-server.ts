/**
 * A real Docker bearer-token server for tests (Node http on 127.0.0.1, random port).
 *
 *   const ts = await startTokenServer({
 *     users: { alice: 'secret' },
 *     repos: [
 *       { name: 'public/*', anonymous: ['pull'], users: { alice: ['pull', 'push'] } },
 *       { name: 'private/app', users: { alice: ['pull', 'push'] } },
 *     ],
 *   });
 *   const reg = await startRegistry({ auth: { token: ts } });
 *   ...
 *   await reg.stop(); await ts.stop();
 *
 * Tokens are RS256 JWTs whose header carries the signing certificate in `x5c`; the certificate
 * (self-signed, made with `openssl req -x509`) is the registry's `rootcertbundle`. A repo rule
 * `name` is an exact repository or a prefix ending in `*`; the first matching rule applies.
 * Wrong credentials get 401; anonymous or unauthorised requests get a token with only the actions
 * they are allowed (possibly none), as docker's own token servers do.
 * `requests` records every token request: the user (null when anonymous), the scopes asked for,
 * and the HTTP status answered.
 */
import { execFileSync } from 'node:child_process';
import { createPrivateKey, randomBytes, sign, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type TokenAction = 'pull' | 'push' | 'delete' | '*';

export interface TokenRepoRule {
  /** Repository name, or a prefix followed by `*`. */
  name: string;
  anonymous?: TokenAction[];
  users?: Record<string, TokenAction[]>;
}

export interface TokenServerOptions {
  /** username → password */
  users?: Record<string, string>;
  repos: TokenRepoRule[];
  /** Token lifetime in seconds (default 300). */
  expiresIn?: number;
}

export interface TokenRequestRecord {
  user: string | null;
  scopes: string[];
  status: number;
  authorization: boolean;
}

export interface TokenServer {
  /** http://127.0.0.1:PORT/token */
  realm: string;
  service: string;
  issuer: string;
  /** PEM certificate for the registry's rootcertbundle. */
  certFile: string;
  requests: TokenRequestRecord[];
  stop(): Promise<void>;
}

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

function ruleFor(rules: TokenRepoRule[], repo: string): TokenRepoRule | undefined {
  return rules.find((r) => (r.name.endsWith('*') ? repo.startsWith(r.name.slice(0, -1)) : r.name === repo));
}

export async function startTokenServer(opts: TokenServerOptions): Promise<TokenServer> {
  const dir = await mkdtemp(join(tmpdir(), 'token-server-'));
  const keyFile = join(dir, 'key.pem');
  const certFile = join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-subj',
      '/CN=shifter-test-token-issuer',
      '-days',
      '2',
    ],
    { stdio: 'ignore' },
  );
  const key = createPrivateKey(await readFile(keyFile));
  const certDer = new X509Certificate(await readFile(certFile)).raw;
  const service = 'shifter-test-registry';
  const issuer = 'shifter-test-issuer';
  const users = opts.users ?? {};
  const requests: TokenRequestRecord[] = [];

  const issue = (user: string | null, scopes: string[]): string => {
    const access: { type: string; name: string; actions: string[] }[] = [];
    for (const scope of scopes) {
      const [type, ...rest] = scope.split(':');
      const actions = (rest.pop() ?? '').split(',').filter(Boolean);
      const name = rest.join(':');
      if (type !== 'repository' || name === '') continue;
      const rule = ruleFor(opts.repos, name);
      const allowed = new Set<string>((user === null ? rule?.anonymous : rule?.users?.[user]) ?? []);
      const granted = allowed.has('*') ? actions : actions.filter((a) => allowed.has(a));
      access.push({ type, name, actions: granted });
    }
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'RS256', x5c: [certDer.toString('base64')] };
    const claims = {
      iss: issuer,
      sub: user ?? '',
      aud: service,
      exp: now + (opts.expiresIn ?? 300),
      nbf: now - 10,
      iat: now,
      jti: randomBytes(12).toString('hex'),
      access,
    };
    const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    return `${signingInput}.${b64url(sign('sha256', Buffer.from(signingInput), key))}`;
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const scopes = url.searchParams
      .getAll('scope')
      .flatMap((s) => s.split(' '))
      .filter(Boolean);
    const auth = req.headers.authorization;
    let user: string | null = null;
    const answer = (status: number, body: object) => {
      requests.push({ user, scopes, status, authorization: auth !== undefined });
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (url.pathname !== '/token') return answer(404, { details: 'not found' });
    if (auth !== undefined) {
      const m = /^Basic (.+)$/i.exec(auth);
      const decoded = m ? Buffer.from(m[1], 'base64').toString('utf8') : '';
      const colon = decoded.indexOf(':');
      const name = decoded.slice(0, colon);
      if (colon < 0 || users[name] === undefined || users[name] !== decoded.slice(colon + 1)) {
        return answer(401, { details: 'invalid username or password' });
      }
      user = name;
    }
    const token = issue(user, scopes);
    return answer(200, {
      token,
      access_token: token,
      expires_in: opts.expiresIn ?? 300,
      issued_at: new Date().toISOString(),
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    certFile,
    requests,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
