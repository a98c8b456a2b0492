"""The Trainium EC2 host's lifecycle: started when a batch is ready, stopped when no work is left.

`Ec2Host.running()` is a context manager: it starts the instance (if stopped), waits until it runs
and its status checks pass, yields its details, and stops it on the way out, whether the batch
succeeded or raised. AWS often has no trn1 capacity in a zone: that comes back as
`HostCapacityError` with a message that says so, not as a raw ClientError.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dagster as dg
from botocore.exceptions import ClientError, WaiterError

log = logging.getLogger("annapurna.host")

# EC2 error codes that mean "no hardware for this instance type right now", not a mistake of ours.
CAPACITY_ERRORS = {"InsufficientInstanceCapacity", "InsufficientCapacity", "InsufficientHostCapacity",
                   "InsufficientReservedInstanceCapacity", "Unsupported"}


class HostError(Exception):
    """The host could not be brought up (or down)."""


class HostCapacityError(HostError):
    """AWS has no capacity for the instance type now; retry later or in another zone."""


@dataclass
class HostInfo:
    instance_id: str
    instance_type: str
    state: str
    private_ip: str | None
    public_ip: str | None
    started_by_us: bool


class Ec2Host(dg.ConfigurableResource):
    instance_id: str
    region_name: str | None = None
    endpoint_url: str | None = None
    wait_for_status_ok: bool = True
    # Waiter pacing: a trn1 instance takes a few minutes to pass its status checks.
    waiter_delay_s: int = 15
    waiter_max_attempts: int = 80
    stop_when_done: bool = True

    def client(self) -> Any:
        import boto3  # noqa: PLC0415

        return boto3.client("ec2", region_name=self.region_name, endpoint_url=self.endpoint_url)

    def describe(self, ec2: Any = None) -> HostInfo:
        ec2 = ec2 or self.client()
        try:
            reservations = ec2.describe_instances(InstanceIds=[self.instance_id])["Reservations"]
        except ClientError as exc:
            raise HostError(f"cannot describe {self.instance_id}: {_code(exc)}: {_message(exc)}") from exc
        if not reservations or not reservations[0]["Instances"]:
            raise HostError(f"instance {self.instance_id} not found")
        inst = reservations[0]["Instances"][0]
        return HostInfo(instance_id=self.instance_id, instance_type=inst.get("InstanceType", ""),
                        state=inst["State"]["Name"], private_ip=inst.get("PrivateIpAddress"),
                        public_ip=inst.get("PublicIpAddress"), started_by_us=False)

    def start(self, ec2: Any = None) -> HostInfo:
        """Start the instance unless it runs already; wait for running (and status OK)."""
        ec2 = ec2 or self.client()
        info = self.describe(ec2)
        if info.state in ("stopping",):
            self._wait(ec2, "instance_stopped")
            info.state = "stopped"
        started = False
        if info.state in ("stopped", "pending"):
            if info.state == "stopped":
                try:
                    ec2.start_instances(InstanceIds=[self.instance_id])
                except ClientError as exc:
                    if _code(exc) in CAPACITY_ERRORS:
                        raise HostCapacityError(
                            f"no {info.instance_type or 'instance'} capacity for {self.instance_id} right now "
                            f"({_code(exc)}: {_message(exc)}); try again later or move the host to another "
                            f"availability zone") from exc
                    raise HostError(f"cannot start {self.instance_id}: {_code(exc)}: {_message(exc)}") from exc
                started = True
            self._wait(ec2, "instance_running")
        elif info.state != "running":
            raise HostError(f"instance {self.instance_id} is {info.state}; cannot run programs on it")
        if self.wait_for_status_ok:
            self._wait(ec2, "instance_status_ok")
        info = self.describe(ec2)
        info.started_by_us = started
        log.info("host %s (%s) is %s", info.instance_id, info.instance_type, info.state)
        return info

    def stop(self, ec2: Any = None, wait: bool = False) -> None:
        ec2 = ec2 or self.client()
        try:
            ec2.stop_instances(InstanceIds=[self.instance_id])
        except ClientError as exc:
            raise HostError(f"cannot stop {self.instance_id}: {_code(exc)}: {_message(exc)}") from exc
        if wait:
            self._wait(ec2, "instance_stopped")
        log.info("host %s stopping", self.instance_id)

    @contextmanager
    def running(self, ec2: Any = None) -> Iterator[HostInfo]:
        """The host, up, for the duration of the block; stopped afterwards, also after a failure
        (and also when starting it failed halfway: an instance left pending costs money)."""
        ec2 = ec2 or self.client()
        try:
            yield self.start(ec2)
        finally:
            if self.stop_when_done:
                try:
                    self.stop(ec2)
                except HostError:
                    # Do not hide the batch's own exception behind the stop's; but say it loudly.
                    log.exception("could not stop host %s; it may still be running and billing", self.instance_id)

    def _wait(self, ec2: Any, waiter_name: str) -> None:
        try:
            ec2.get_waiter(waiter_name).wait(
                InstanceIds=[self.instance_id],
                WaiterConfig={"Delay": self.waiter_delay_s, "MaxAttempts": self.waiter_max_attempts})
        except WaiterError as exc:
            raise HostError(f"{self.instance_id}: gave up waiting for {waiter_name.removeprefix('instance_')}: "
                            f"{exc}") from exc


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))
