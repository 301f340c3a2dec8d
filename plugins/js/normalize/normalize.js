// normalize: FP32 INPUT (any shape) -> FP32 OUTPUT = (INPUT - mean) / std.
//
// `mean` and `std` are the model's config.pbtxt parameters (defaults 0 and 1),
// read through the host import `get-parameter`. A `std` of 0, or a value that
// is not a finite decimal number, fails the request with invalid-argument
// naming the parameter; so does a request without INPUT.
//
// Built into a component by plugins/js/build.sh (ComponentizeJS) against
// sdk/wit/plugin.wit, world `plugin`. See sdk/js/README.md.

import { getParameter } from 'kiln:plugin/host@1.0.0';

// A decimal number: optional sign, digits with an optional fraction, optional
// exponent. Stricter than Number(), which accepts '' (0), '0x10' and 'Infinity'.
const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

// Thrown values with a `payload` become the `error` of `result<_, error>`.
class PluginError extends Error {
  constructor(kind, message) {
    super(message);
    this.payload = { kind, message };
  }
}

function invalid(message) {
  return new PluginError('invalid-argument', message);
}

function param(key, fallback) {
  const raw = getParameter(key);
  if (raw === undefined || raw === null) return fallback;
  const text = raw.trim();
  const value = NUMBER.test(text) ? Number(text) : NaN;
  if (!Number.isFinite(value)) {
    throw invalid(`config parameter '${key}' must be a finite number, got '${raw}'`);
  }
  return value;
}

// Config parameters are fixed while a model version is loaded: read them
// once per instance. A bad value is reported on every request.
let settings;
function config() {
  if (settings === undefined) {
    try {
      const mean = Math.fround(param('mean', 0));
      const std = Math.fround(param('std', 1));
      if (std === 0) throw invalid(`config parameter 'std' must not be 0`);
      settings = { mean, std };
    } catch (e) {
      settings = { error: e };
    }
  }
  if (settings.error) throw settings.error;
  return settings;
}

const spec = (name) => ({ name, datatype: 'fp32', dims: [-1n] });

export const processor = {
  metadata() {
    return {
      name: 'normalize-js',
      version: '1.0.0',
      inputs: [spec('INPUT')],
      outputs: [spec('OUTPUT')],
    };
  },

  process(inputs, _parameters) {
    try {
      const { mean, std } = config();
      const input = inputs.find((t) => t.name === 'INPUT');
      if (!input) throw invalid(`missing input 'INPUT'`);
      if (input.datatype !== 'fp32') {
        throw invalid(`input 'INPUT' is ${input.datatype.toUpperCase()}, expected FP32`);
      }
      const bytes = input.data;
      if (bytes.length % 4 !== 0) throw invalid(`input 'INPUT' has ${bytes.length} bytes, not a multiple of 4`);
      // Float32Array is little-endian on wasm; copy if the bytes are unaligned.
      const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
      const x = new Float32Array(aligned.buffer, aligned.byteOffset, aligned.length / 4);
      const y = new Float32Array(x.length);
      for (let i = 0; i < x.length; i++) {
        y[i] = Math.fround(Math.fround(x[i] - mean) / std);
      }
      return [{
        name: 'OUTPUT',
        datatype: 'fp32',
        shape: input.shape,
        data: new Uint8Array(y.buffer),
        elements: [],
      }];
    } catch (e) {
      if (e instanceof PluginError) throw e;
      throw new PluginError('internal', `normalize-js: ${e}`);
    }
  },
};
