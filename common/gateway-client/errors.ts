/** What the gateway client throws besides plain ShifterErrors (NOT_FOUND, AUTH_FAILED, BAD_ARGUMENT). */
import { ShifterError } from '../errors.js';

/**
 * The gateway answered, but with an error status or a body that cannot be used. The gateway is a
 * server images come through, so this shares REGISTRY_ERROR ("answered with something we
 * cannot use").
 */
export class GatewayAnswerError extends ShifterError {
  constructor(
    message: string,
    readonly httpStatus?: number,
  ) {
    super('REGISTRY_ERROR', message);
    this.name = 'GatewayAnswerError';
  }
}

/** Why one gateway gave no usable answer to one attempt. */
export interface AttemptFailure {
  /** The imageGateway entry as the config wrote it. */
  readonly gateway: string;
  /** The system's error code when there is one (ECONNREFUSED, ENOTFOUND, ...). */
  readonly errno?: string;
  /** For people: `connection refused`, `no answer within 30 s (gatewayTimeout)`, `HTTP 503`. */
  readonly reason: string;
}

/** No gateway in imageGateway gave an answer; `failures` says why, gateway by gateway. */
export class GatewayUnreachableError extends ShifterError {
  constructor(readonly failures: readonly AttemptFailure[]) {
    super(
      'UNREACHABLE',
      `cannot reach the image gateway (${failures.map((f) => `${f.gateway}: ${f.reason}`).join('; ')}): ` +
        'check that it is running and that imageGateway in udiRoot.conf is right',
    );
    this.name = 'GatewayUnreachableError';
  }
}
