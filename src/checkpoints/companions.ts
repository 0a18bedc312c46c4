import { readdir } from 'node:fs/promises';
import { join } from 'node:path';

import { fsError } from '../errors.js';

/**
 * Files that describe the model (so transformers loads the merge as is) as opposed to training
 * state (optimizer, scheduler, RNG, trainer state), which must never travel with a merged model.
 */
const MODEL_FILES = [
  /^config\.json$/,
  /^generation_config\.json$/,
  /^tokenizer(_config)?\.json$/,
  /^tokenizer\.model$/,
  /^special_tokens_map\.json$/,
  /^added_tokens\.json$/,
  /^vocab\.(json|txt)$/,
  /^merges\.txt$/,
  /^(spiece|sentencepiece\.bpe)\.model$/,
  /^chat_template\.(jinja|json)$/,
  /^(preprocessor|processor|image_processor)_config\.json$/,
  /^(configuration|modeling|tokenization)_[\w-]+\.py$/,
];

export async function companionFiles(dir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    throw fsError(e, 'cannot list', dir);
  }
  return entries
    .filter((e) => e.isFile() && MODEL_FILES.some((re) => re.test(e.name)))
    .map((e) => join(dir, e.name))
    .sort();
}
