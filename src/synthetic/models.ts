import type { DType } from '../dtypes.js';
import type { SyntheticTensor } from './writer.js';

/** The shape of a mixture-of-experts decoder, as its config.json describes it. */
export interface MoeShape {
  hidden: number;
  /** Each expert's intermediate size. */
  intermediate: number;
  /** Key/value width (grouped-query attention: fewer than hidden). */
  kvDim: number;
  experts: number;
  layers: number;
  vocab: number;
  headDim: number;
}

/** Dtypes of the parts of a model: the weights, and where a trainer keeps others (router, norms, head). */
export interface MoeDtypes {
  weights: DType;
  router?: DType;
  norms?: DType;
  head?: DType;
}

/** The tensors of a Mixtral/Qwen-MoE-style checkpoint, in the order a trainer saves them. */
export function moeTensors(a: MoeShape, d: MoeDtypes): SyntheticTensor[] {
  const { hidden: H, intermediate: I, kvDim: KV, experts: E, layers: L, vocab: V } = a;
  const w = d.weights;
  const norm = d.norms ?? w;
  const t: SyntheticTensor[] = [{ name: 'model.embed_tokens.weight', dtype: w, shape: [V, H] }];
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}`;
    t.push({ name: `${p}.input_layernorm.weight`, dtype: norm, shape: [H] });
    t.push({ name: `${p}.self_attn.q_proj.weight`, dtype: w, shape: [H, H] });
    t.push({ name: `${p}.self_attn.k_proj.weight`, dtype: w, shape: [KV, H] });
    t.push({ name: `${p}.self_attn.v_proj.weight`, dtype: w, shape: [KV, H] });
    t.push({ name: `${p}.self_attn.o_proj.weight`, dtype: w, shape: [H, H] });
    t.push({ name: `${p}.post_attention_layernorm.weight`, dtype: norm, shape: [H] });
    t.push({ name: `${p}.mlp.gate.weight`, dtype: d.router ?? w, shape: [E, H] });
    for (let e = 0; e < E; e++) {
      t.push({ name: `${p}.mlp.experts.${e}.gate_proj.weight`, dtype: w, shape: [I, H] });
      t.push({ name: `${p}.mlp.experts.${e}.up_proj.weight`, dtype: w, shape: [I, H] });
      t.push({ name: `${p}.mlp.experts.${e}.down_proj.weight`, dtype: w, shape: [H, I] });
    }
  }
  t.push({ name: 'model.norm.weight', dtype: norm, shape: [H] });
  t.push({ name: 'lm_head.weight', dtype: d.head ?? w, shape: [V, H] });
  return t;
}

const TORCH_DTYPE: Partial<Record<DType, string>> = { BF16: 'bfloat16', F16: 'float16', F32: 'float32' };

/** The config.json of such a checkpoint (enough for a reader to know the model; never loadable weights). */
export function moeConfig(a: MoeShape, dtype: DType, modelType: string): string {
  const config = {
    architectures: ['PmaSyntheticMoeForCausalLM'],
    model_type: modelType,
    _comment: 'synthetic checkpoint written by pma; its weights are not a trained model',
    hidden_size: a.hidden,
    intermediate_size: a.intermediate,
    moe_intermediate_size: a.intermediate,
    num_experts: a.experts,
    num_experts_per_tok: 2,
    num_hidden_layers: a.layers,
    num_attention_heads: Math.max(1, a.hidden / a.headDim),
    num_key_value_heads: Math.max(1, a.kvDim / a.headDim),
    vocab_size: a.vocab,
    torch_dtype: TORCH_DTYPE[dtype] ?? dtype,
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}

/**
 * A MoE shape whose tensors add up to about `target` bytes at `elementBytes` each: the hidden
 * size is the largest that still gives at least 8 layers, the layers take ~88% of the bytes and
 * the vocabulary (embed_tokens + lm_head) the rest.
 */
export function moeShapeFor(target: number, elementBytes: number, experts = 16): MoeShape {
  const shapeOf = (H: number) => {
    const I = (3 * H) / 8;
    const kv = H / 4; // grouped-query attention: 4 query heads per kv head
    const layerElems = experts * 3 * H * I + 2 * H * H + 2 * kv * H + experts * H + 2 * H;
    return { H, I, kv, layerBytes: layerElems * elementBytes };
  };
  let a = shapeOf(64);
  for (const H of [128, 256, 512, 1024, 2048, 4096]) {
    const c = shapeOf(H);
    if (c.layerBytes * 8 <= target) a = c;
  }
  const layers = Math.max(1, Math.floor((target * 0.88) / a.layerBytes));
  const rest = target - layers * a.layerBytes - a.H * elementBytes; // final norm
  const vocab = Math.max(64, Math.floor(rest / (2 * a.H * elementBytes)));
  return { hidden: a.H, intermediate: a.I, kvDim: a.kv, experts, layers, vocab, headDim: 64 };
}
