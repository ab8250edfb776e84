from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class MultiplexingSupportRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MultiplexingSupportResponse(_message.Message):
    __slots__ = ("supported",)
    SUPPORTED_FIELD_NUMBER: _ClassVar[int]
    supported: bool
    def __init__(self, supported: _Optional[bool] = ...) -> None: ...
