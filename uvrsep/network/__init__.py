"""The network stage: VR-architecture nets and loading of official weight files."""

from .cascaded_aspp import AsppNetConfig, BaseASPPNet, CascadedASPPNet
from .checkpoint import LoadedWeights, describe_state_dict, load_network, read_state_dict

__all__ = [
    "AsppNetConfig",
    "BaseASPPNet",
    "CascadedASPPNet",
    "LoadedWeights",
    "describe_state_dict",
    "load_network",
    "read_state_dict",
]
