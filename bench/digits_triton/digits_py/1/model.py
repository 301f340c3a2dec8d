# The digits TorchScript classifier run through torch in Triton's Python backend (CPU).
import os
import sys

for _p in reversed([p for p in os.environ.get("KILN_TRITON_STUBPY", "").split(os.pathsep) if p]):
    if _p not in sys.path:
        sys.path.insert(0, _p)
# torch and Pillow come from the machine's venv, after the bundle's numpy 1.26.
_site = os.environ.get("KILN_TORCH_SITE", "")
if _site and _site not in sys.path:
    sys.path.append(_site)

import torch  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        self.model = torch.jit.load(os.environ["KILN_DIGITS_PT"]).eval()

    def execute(self, requests):
        responses = []
        for request in requests:
            x = torch.from_numpy(pb_utils.get_input_tensor_by_name(request, "pixels").as_numpy())
            with torch.inference_mode():
                logits = self.model(x).numpy()
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("logits", logits)]))
        return responses
