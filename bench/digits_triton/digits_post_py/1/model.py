# digits post-processing in Triton's Python backend: softmax, top-1 as
# "score:index:label" (what plugins/c/classify_postprocess produces).
import os
import sys

for _p in reversed([p for p in os.environ.get("KILN_TRITON_STUBPY", "").split(os.pathsep) if p]):
    if _p not in sys.path:
        sys.path.insert(0, _p)
# torch and Pillow come from the machine's venv, after the bundle's numpy 1.26.
_site = os.environ.get("KILN_TORCH_SITE", "")
if _site and _site not in sys.path:
    sys.path.append(_site)

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

LABELS = "zero one two three four five six seven eight nine".split()


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, "LOGITS").as_numpy()
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            p = e / e.sum(axis=1, keepdims=True)
            top = p.argmax(axis=1)
            out = np.array([[f"{p[i, k]:.6f}:{k}:{LABELS[k]}".encode()] for i, k in enumerate(top)], dtype=object)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("CLASSES", out)]))
        return responses
