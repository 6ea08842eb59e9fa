"""Differential LoRA training, export and merging (DESIGN.md step 6).

``train_lora`` trains on (prompt, before, after) pairs; ``lora_io`` writes and reads diffusers and kohya files;
``merge`` combines LoRAs by summing their deltas.
"""

from artaug.config import FLUX_TARGET_MODULES, TrainConfig
from artaug.train.data import TrainPair
from artaug.train.trainer import TrainResult, train_lora, train_stage

__all__ = ["FLUX_TARGET_MODULES", "TrainConfig", "TrainPair", "TrainResult", "train_lora", "train_stage"]
