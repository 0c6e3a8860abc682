/** What every shifterimg command gets: the parsed config, a gateway client and the output streams. */
import type { UdiRootConfig } from '../../common/config/udiroot-conf.js';
import type { GatewayClient } from '../../common/gateway-client/client.js';

export interface Output {
  write(s: string): unknown;
  readonly isTTY?: boolean;
}

export interface CommandContext {
  readonly config: UdiRootConfig;
  readonly system: string;
  readonly client: GatewayClient;
  readonly stdout: Output;
  readonly stderr: Output;
  readonly verbose: boolean;
}
