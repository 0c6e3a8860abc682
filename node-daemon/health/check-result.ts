/** What one node check found, and how the report reads: one line each, `ok` or `FAIL ... : what to do`. */

export type CheckResult =
  | { readonly name: string; readonly ok: true; readonly detail: string }
  | { readonly name: string; readonly ok: false; readonly problem: string; readonly fix: string };

export const passed = (name: string, detail: string): CheckResult => ({ name, ok: true, detail });
export const failed = (name: string, problem: string, fix: string): CheckResult => ({ name, ok: false, problem, fix });

export function formatCheck(r: CheckResult): string {
  return r.ok ? `ok   ${r.name}: ${r.detail}` : `FAIL ${r.name}: ${r.problem}; ${r.fix}`;
}

/** 0 only when every check passed. */
export function exitCodeOf(results: readonly CheckResult[]): 0 | 1 {
  return results.every((r) => r.ok) ? 0 : 1;
}
