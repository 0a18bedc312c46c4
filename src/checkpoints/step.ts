/**
 * The training step a checkpoint name carries: `checkpoint-1000`, `step-1000`, `step_1000`,
 * `global_step1000`, `iter_0001000`, `ckpt.1000`, `1000`. The number must end the name (after
 * an optional `.safetensors`), so `checkpoint-1000.tmp` or `run2-final` carry none.
 */
const STEP_RE = /^(?:[A-Za-z][A-Za-z_-]*?[-_.]?)?(\d+)$/;

export function parseStep(name: string): number | null {
  const stem = name.endsWith('.safetensors') ? name.slice(0, -'.safetensors'.length) : name;
  const m = STEP_RE.exec(stem);
  if (!m || m[1] === undefined) return null;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? n : null;
}
