"""A gRPC method handler with its behaviour wrapped, the one way server interceptors do it."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

Behaviour = Callable[[Any, Any], Any]


def rewrapped(
    handler: grpc.RpcMethodHandler,
    unary_response: Callable[[Behaviour], Behaviour],
    stream_response: Callable[[Behaviour], Behaviour],
) -> grpc.RpcMethodHandler:
    """The same method, its behaviour passed through `unary_response` when it answers once and
    through `stream_response` when it answers with a stream."""
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary_response(handler.unary_unary), **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(stream_response(handler.unary_stream), **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary_response(handler.stream_unary), **kwargs)
    return grpc.stream_stream_rpc_method_handler(stream_response(handler.stream_stream), **kwargs)


async def responses(behaviour: Behaviour, request: Any, context: Any) -> AsyncIterator[Any]:
    """What a stream-response behaviour answers: the messages it yields, or none when it writes
    them itself with context.write() and returns (grpc.health.v1's Watch does)."""
    produced = behaviour(request, context)
    if inspect.isawaitable(produced):
        await produced
        return
    async for item in produced:
        yield item
