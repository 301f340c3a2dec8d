# ResNet-50 TorchScript in Triton's Python backend, on the GPU: the reference
# peer for bench/gpu_vs_triton.sh (what Triton users run today when they put
# torch code in the Python backend). Requests batched by Triton's dynamic
# batcher arrive together in `execute`; they are concatenated, run in one
# forward pass and split back.
import os
import sys

for _p in reversed([p for p in os.environ.get("KILN_TRITON_STUBPY", "").split(os.pathsep) if p]):
    if _p not in sys.path:
        sys.path.insert(0, _p)
# torch comes from the GPU machine's venv, after the bundle's numpy 1.26.
_torch_site = os.environ.get("KILN_TORCH_SITE", "/opt/torch/.venv/lib/python3.12/site-packages")
if _torch_site not in sys.path:
    sys.path.append(_torch_site)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        path = os.environ["KILN_RESNET_PT"]
        self.device = torch.device("cuda:0")
        self.model = torch.jit.load(path, map_location=self.device).eval()

    def execute(self, requests):
        arrays = [pb_utils.get_input_tensor_by_name(r, "INPUT__0").as_numpy() for r in requests]
        sizes = [a.shape[0] for a in arrays]
        batch = torch.from_numpy(np.concatenate(arrays)).to(self.device)
        with torch.inference_mode():
            out = self.model(batch).cpu().numpy()
        responses, start = [], 0
        for n in sizes:
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUTPUT__0", out[start:start + n])]))
            start += n
        return responses
