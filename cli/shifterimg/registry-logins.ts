/**
 * The munge payload every request carries (upstream constructAuthMessage): the saved logins of
 * this system, each decoded through munged, as `{"authorized_locations": {"<location>": "user:pass"}}`,
 * or the empty payload when there are none. A saved credential is old by design, so expired and
 * replayed ones are accepted; one made by another uid is not used (upstream's rule), and one
 * munged cannot decode (another munge key) is reported, so the user knows to log in again.
 */
import { describeError } from '../../common/errors.js';
import { mungeDecode } from '../../common/munge.js';
import type { SavedLogin } from './credential-file.js';

export interface DecodedLogins {
  /** The JSON payload, or '' when no login applies. */
  readonly payload: string;
  /** One line each, for stderr. */
  readonly warnings: string[];
}

export async function authorizedLocationsPayload(
  logins: readonly SavedLogin[],
  system: string,
  uid: number,
  socket: string,
): Promise<DecodedLogins> {
  const locations: Record<string, string> = {};
  const warnings: string[] = [];
  for (const login of logins) {
    if (login.system !== system) continue;
    try {
      const decoded = await mungeDecode(login.cred, { socket, acceptStale: true });
      if (decoded.uid !== uid) {
        warnings.push(`the saved login for ${login.location} was made by uid ${decoded.uid}, not you; it is not used`);
        continue;
      }
      locations[login.location] = decoded.payload;
    } catch (e) {
      warnings.push(
        `the saved login for ${login.location} cannot be read (${describeError(e)}); ` +
          `run shifterimg login ${login.location} again`,
      );
    }
  }
  if (Object.keys(locations).length === 0) return { payload: '', warnings };
  return { payload: JSON.stringify({ authorized_locations: locations }), warnings };
}
