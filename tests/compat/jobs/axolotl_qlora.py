"""QLoRA fine-tuning with an Axolotl-style config file, as W&B's "Manage job inputs" page suggests
for config-file jobs: the YAML is patched before it is read; the run config carries the run name and
the LoRA target modules, with a schema (a multi-select of enum items) for the launch form."""

import wandb
import yaml
from wandb.sdk import launch

launch.manage_config_file("qlora.yaml", exclude=["base_model"])

schema = {
    "type": "object",
    "properties": {
        "run_name": {"type": "string", "label": "Run name", "placeholder": "qlora-70b"},
        "target_modules": {
            "type": "array",
            "label": "LoRA target modules",
            "items": {"type": "string", "enum": ["q_proj", "k_proj", "v_proj", "o_proj"]},
            "uniqueItems": True,
            "minItems": 1,
        },
    },
}
launch.manage_wandb_config(include=["run_name", "target_modules"], schema=schema)

with open("qlora.yaml") as f:
    cfg = yaml.safe_load(f)

with wandb.init(project="axolotl", config={"run_name": "qlora", "target_modules": ["q_proj", "v_proj"]}) as run:
    print(
        f"used base_model={cfg['base_model']} lora_r={cfg['lora_r']} micro_batch_size={cfg['micro_batch_size']} "
        f"run_name={run.config.run_name} target_modules={','.join(run.config.target_modules)}"
    )
    for step in range(cfg["num_epochs"]):
        wandb.log({"train": {"loss": 1.5 / (step + 1)}, "lora_r": cfg["lora_r"]})
