/** The name a Slurm job's holds go by in shifterd: set by its prolog, matched by its launches. */
export const jobHolder = (jobId: string): string => `slurm-job-${jobId}`;
