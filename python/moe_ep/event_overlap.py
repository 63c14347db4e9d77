"""EventOverlap (deep_ep's): the event of an async call plus the tensors to keep alive
until it completes; `with event:` makes the current stream wait for it on exit."""


class EventOverlap:
    def __init__(self, event=None, extra_tensors=None):
        self.event = event                  # moe_ep._C.Event, or None
        self.extra_tensors = extra_tensors  # tuple of tensors kept alive, or None

    def current_stream_wait(self):
        """Makes torch's current stream wait for the event (no host wait)."""
        from .streams import current_stream_handle
        if self.event is None:
            raise ValueError("EventOverlap.current_stream_wait: this EventOverlap holds no event")
        self.event.stream_wait(current_stream_handle())

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        if self.event is not None:
            self.current_stream_wait()
