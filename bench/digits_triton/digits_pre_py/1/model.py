# digits pre-processing in Triton's Python backend: PNG bytes -> FP32 [1,8,8],
# the same steps as plugins/rust/image_preprocess with the digits_preprocess
# parameters (grayscale, area resize to 8x8, scale to [0,1]).
import os
import sys

for _p in reversed([p for p in os.environ.get("KILN_TRITON_STUBPY", "").split(os.pathsep) if p]):
    if _p not in sys.path:
        sys.path.insert(0, _p)
# torch and Pillow come from the machine's venv, after the bundle's numpy 1.26.
_site = os.environ.get("KILN_TORCH_SITE", "")
if _site and _site not in sys.path:
    sys.path.append(_site)

import io  # noqa: E402

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402
from PIL import Image  # noqa: E402


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().reshape(-1)
            pixels = np.stack([
                np.asarray(Image.open(io.BytesIO(b)).convert("L").resize((8, 8), Image.BOX), dtype=np.float32)[None] / 255.0
                for b in images
            ])
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("PIXELS", pixels)]))
        return responses
