/**
 * Which items of a DCP checkpoint are the model's weights (averaged) and which are training state
 * (taken from the newest checkpoint as they are): the top-level names that torchtitan,
 * Megatron-LM / NeMo and OLMo-core give to optimizer, scheduler, data-loader, RNG and train state.
 */
const TRAINING_STATE = [
  'optimizer',
  'optim',
  'optimizer_state',
  'lr_scheduler',
  'scheduler',
  'opt_param_scheduler',
  'dataloader',
  'data_loader',
  'train_state',
  'trainer',
  'rng_state',
  'rng',
  'args',
  'checkpoint_version',
  'iteration',
  'num_floating_point_operations_so_far',
];

/** Whether `fqn` belongs to training state rather than to the model. */
export function isTrainingState(fqn: string): boolean {
  const head = fqn.split('.', 1)[0] as string;
  return TRAINING_STATE.includes(head);
}
