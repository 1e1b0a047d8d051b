"""The network stage: VR-architecture nets and loading of official weight files."""

from .cascaded_aspp import AsppNetConfig, BaseASPPNet, CascadedASPPNet
from .cascaded_lstm import BaseNet, CascadedNet, LstmNetConfig
from .checkpoint import (
    Architecture,
    LoadedWeights,
    VRNet,
    check_weight_file,
    describe_state_dict,
    detect_architecture,
    load_network,
    read_state_dict,
)
from .validation import check_tensors

__all__ = [
    "Architecture",
    "AsppNetConfig",
    "BaseASPPNet",
    "BaseNet",
    "CascadedASPPNet",
    "CascadedNet",
    "LoadedWeights",
    "LstmNetConfig",
    "VRNet",
    "check_tensors",
    "check_weight_file",
    "describe_state_dict",
    "detect_architecture",
    "load_network",
    "read_state_dict",
]
