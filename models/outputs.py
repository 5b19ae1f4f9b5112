"""Expose the logits and the penultimate embedding of a TFLite classifier as extra outputs.

The converter only outputs the softmax. The runtime also wants the logits (for temperature
scaling and the energy score) and the pooled feature vector feeding the last dense layer
(for the out-of-distribution score and drift). Both tensors already exist in the graph; this
adds them to the subgraph's output list without changing any weight or op, so predictions
stay bit-identical.
"""

from __future__ import annotations

from ai_edge_litert import schema_py_generated as schema  # type: ignore[import-untyped,unused-ignore]
from ai_edge_litert.tools import flatbuffer_utils  # type: ignore[import-untyped,unused-ignore]

OUTPUT_ORDER = ("probabilities", "logits", "embedding")


def _tensor_name(tensor: object) -> str:
    name = getattr(tensor, "name", b"")
    return name.decode("utf-8") if isinstance(name, bytes) else str(name)


def add_head_outputs(content: bytes) -> tuple[bytes, dict[str, str]]:
    """Return the model with outputs (probabilities, logits, embedding) and their tensor names."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    graph = model.subgraphs[0]
    if len(graph.outputs) != 1:
        raise ValueError(f"expected a model with one output, got {len(graph.outputs)}")
    probs = int(graph.outputs[0])

    def code(op: object) -> int:
        opcode = model.operatorCodes[op.opcodeIndex]  # type: ignore[attr-defined]
        return int(flatbuffer_utils.get_builtin_code_from_operator_code(opcode))

    producer = {int(out): op for op in graph.operators for out in op.outputs}
    softmax = producer.get(probs)
    if softmax is None or code(softmax) != schema.BuiltinOperator.SOFTMAX:
        raise ValueError("the model output is not produced by a SOFTMAX op")
    logits = int(softmax.inputs[0])
    dense = producer.get(logits)
    if dense is None or code(dense) != schema.BuiltinOperator.FULLY_CONNECTED:
        raise ValueError("the softmax input is not produced by a FULLY_CONNECTED op")
    embedding = int(dense.inputs[0])
    graph.outputs = [probs, logits, embedding]
    names = {
        kind: _tensor_name(graph.tensors[index])
        for kind, index in zip(OUTPUT_ORDER, graph.outputs, strict=True)
    }
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), names
