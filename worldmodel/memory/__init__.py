"""The memory model (World Models' M): the MDN-RNN and its checkpoints, latent sequences, its trainer."""

from worldmodel.memory.model import MDNRNN, MemoryCheckpoint, MemoryConfig, load_memory, memory_loss, save_memory

__all__ = ["MDNRNN", "MemoryCheckpoint", "MemoryConfig", "load_memory", "memory_loss", "save_memory"]
