/**
 * Tensor-name globs (`--average`, `--exclude`): `*` any run of characters (dots included), `?` one
 * character; a glob matches the whole name. "model.layers.*.mlp.*" or "*.bias".
 */
export function globMatcher(globs: readonly string[]): (name: string) => boolean {
  if (globs.length === 0) return () => false;
  const source = globs
    .map((g) =>
      g
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*/g, '.*')
        .replace(/\?/g, '.'),
    )
    .join('|');
  const re = new RegExp(`^(?:${source})$`, 's');
  return (name) => re.test(name);
}
