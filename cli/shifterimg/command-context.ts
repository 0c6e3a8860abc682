/** What every shifterimg command gets: the parsed config, a gateway client and the output streams. */
import type { UdiRootConfig } from '../../common/config/udiroot-conf.js';
import type { GatewayClient } from '../../common/gateway-client/client.js';

export interface Output {
  write(s: string): unknown;
  readonly isTTY?: boolean;
}

/** What login and logout need: who the user is and where their saved logins live. */
export interface LoginContext {
  readonly config: UdiRootConfig;
  readonly system: string;
  /** The user's home directory from the password database (as upstream), not $HOME. */
  readonly home: string;
  readonly uid: number;
  readonly stdout: Output;
  readonly stderr: Output;
}

export interface CommandContext extends LoginContext {
  readonly client: GatewayClient;
  readonly verbose: boolean;
}
