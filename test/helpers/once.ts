/** A callback that runs `f` the first time it is called and does nothing after (an onProgress that acts once). */
export function once(f: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    f();
  };
}
