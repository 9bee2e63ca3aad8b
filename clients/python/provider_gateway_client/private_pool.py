"""Message classes from a hand-declared proto file, in a descriptor pool of their own.

The client needs a few messages whose generated modules live in packages it does not depend on
(grpcio-health-checking, googleapis-common-protos). Declared in a private pool, they cannot clash
with those packages' registrations in the default pool when both are loaded in one process.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory


def message_classes(file: descriptor_pb2.FileDescriptorProto, *names: str) -> list[Any]:
    """The classes of `file`'s messages `names`, in the order given."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return [message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{file.package}.{n}")) for n in names]
