"""Replica groups: a mixed fleet of several GPU types, each group with its own GPU, tensor-parallel
degree, replica count, calibration profile and power limit (fleet.groups)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from fleetsim.spec.base import INTEGER, MAX_REPLICAS, NUMBER, Name, PathText, Spec

MAX_GROUPS = 16
MAX_GROUP_TP = 1024
#: The top-level fleet fields a group replaces: set beside fleet.groups they would be ambiguous.
GROUP_FIELDS = ("gpu", "tp", "replicas", "profile", "power_limit_w")


class ReplicaGroupSpec(Spec):
    """One group of identical replicas in a mixed fleet."""

    name: Name = Field(description="The group's name, shown in the replica table and the summary; unique in the fleet.")
    gpu: PathText = Field(description="GPU of this group: a catalog name (`fleetsim gpus`). Required.")
    tp: Annotated[int, Field(ge=1, le=MAX_GROUP_TP), INTEGER] = Field(
        default=1, description=f"Tensor-parallel degree of this group's replicas; 1 to {MAX_GROUP_TP}. Default 1."
    )
    replicas: Annotated[int, Field(ge=0, le=MAX_REPLICAS), INTEGER] = Field(
        default=1,
        description=f"Replicas in this group; 0 to {MAX_REPLICAS:,} (0: the group is absent, as `plan --mix` "
        "tries). Default 1.",
    )
    profile: PathText | None = Field(
        default=None,
        description="Calibration profile of this group's GPU: a path to a profile YAML, or null (default) for "
        "the GPU's shipped profile.",
    )
    power_limit_w: Annotated[float, Field(gt=0, le=20_000), NUMBER] | None = Field(
        default=None,
        description="Board power limit of this group's GPUs, W (as fleet.power_limit_w). Default null: the TDP.",
    )
    rental_usd_per_gpu_hour: Annotated[float, Field(ge=0, le=10_000), NUMBER] | None = Field(
        default=None,
        description="Rental price of this group's GPUs, $/GPU-hour, 0 to 10,000. Default null: "
        "cost.rental_usd_per_gpu_hour if set, else the GPU's catalog price.",
    )
