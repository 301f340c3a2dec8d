// kiln's edge to libtorch's operator registry: custom ops (`ns::name(...)`)
// that TorchScript models call and kiln implements in Rust (src/custom_ops.rs)
// with the model's op plugins.
//
// Every op kiln registers gets the same boxed kernel: it hands the op's name
// and its argument stack to Rust (`kiln_custom_op_call`), which finds the
// implementation of the model running on this thread, and turns an error
// from Rust into a c10::Error, which the forward pass reports as its own.
//
// The stack accessors below let Rust read arguments and push results without
// knowing c10::IValue's layout. Tensors cross as heap-allocated at::Tensor
// handles, the representation tch uses (`torch::Tensor*`), so Rust wraps them
// in tch::Tensor and owns them.
//
// Strings returned to Rust are malloc'd; Rust frees them.

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/function_schema.h>
#include <ATen/core/stack.h>
#include <ATen/ops/leaky_relu.h>
#include <torch/library.h>

#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>

extern "C" {
// Implemented in Rust: runs the op on `stack` (arguments in, results out).
// Returns null on success, else a malloc'd message (this side frees it).
char* kiln_custom_op_call(const char* name, void* stack);
}

namespace {

char* copy_string(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, s.c_str(), s.size() + 1);
  }
  return out;
}

// The argument types Rust reads off the stack (kiln_stack_tag).
bool supported_argument(const c10::Type& type) {
  if (auto optional = type.cast<c10::OptionalType>()) {
    return supported_argument(*optional->getElementType());
  }
  switch (type.kind()) {
    case c10::TypeKind::TensorType:
    case c10::TypeKind::FloatType:
    case c10::TypeKind::IntType:
    case c10::TypeKind::BoolType:
      return true;
    case c10::TypeKind::ListType: {
      auto element = type.castRaw<c10::ListType>()->getElementType()->kind();
      return element == c10::TypeKind::IntType || element == c10::TypeKind::FloatType;
    }
    default:
      return false;
  }
}

void forward_to_rust(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const auto& name = op.schema().name();
  char* error = kiln_custom_op_call(name.c_str(), stack);
  if (error != nullptr) {
    std::string message(error);
    std::free(error);
    TORCH_CHECK(false, message);
  }
  TORCH_CHECK(stack->size() == op.schema().returns().size(), "custom op ", name, " gave ",
              stack->size(), " results; its schema has ", op.schema().returns().size());
}

torch::jit::Stack& as_stack(void* stack) {
  return *static_cast<torch::jit::Stack*>(stack);
}

}  // namespace

extern "C" {

// The canonical text of a schema ("ns::name(Tensor x, float s=1.) -> Tensor"),
// or null with *error set (malloc'd) when it does not parse.
char* kiln_schema_canonical(const char* text, char** error) {
  try {
    auto schema = torch::schema(text);
    std::ostringstream out;
    out << schema;
    return copy_string(out.str());
  } catch (const std::exception& e) {
    *error = copy_string(e.what());
    return nullptr;
  }
}

// The schema registered under `name` ("ns::name"), by anyone, or null.
char* kiln_schema_registered(const char* name) {
  try {
    auto op = c10::Dispatcher::singleton().findSchema({name, ""});
    if (!op.has_value()) {
      return nullptr;
    }
    std::ostringstream out;
    out << op->schema();
    return copy_string(out.str());
  } catch (const std::exception&) {
    return nullptr;
  }
}

// Defines the op of `schema` ("ns::name(...) -> ...") with the kernel that
// forwards to Rust, for every dispatch key (CompositeImplicitAutograd: what the
// kernel does is made of aten ops, which bring their own autograd). The
// library is never freed: its registration lasts as long as the process.
// Returns null, or a malloc'd message.
char* kiln_custom_op_define(const char* schema_text) {
  try {
    auto schema = torch::schema(schema_text);
    const std::string& name = schema.name();
    auto sep = name.find("::");
    if (sep == std::string::npos || sep == 0) {
      return copy_string("an op's name needs a namespace: ns::name");
    }
    for (const auto& arg : schema.arguments()) {
      if (!supported_argument(*arg.type())) {
        return copy_string("argument '" + arg.name() + "' of " + name + " is a " +
                           arg.type()->str() +
                           "; op plugins take Tensor, Tensor?, float, int, bool, int[] and float[] "
                           "(optional or not)");
      }
    }
    if (schema.returns().empty()) {
      return copy_string(name + " returns nothing; an op plugin's op returns one or more Tensors");
    }
    for (const auto& ret : schema.returns()) {
      if (ret.type()->kind() != c10::TypeKind::TensorType) {
        return copy_string(name + " returns a " + ret.type()->str() +
                           "; an op plugin's op returns Tensors only");
      }
    }
    if (schema.is_mutable()) {
      return copy_string(name + " writes to an argument (Tensor(a!)); op plugins' ops are functional");
    }
    auto* library = new torch::Library(
        torch::Library::FRAGMENT, name.substr(0, sep), std::nullopt, __FILE__, __LINE__);
    library->def(
        std::move(schema), torch::CppFunction::makeFromBoxedFunction<&forward_to_rust>());
    return nullptr;
  } catch (const std::exception& e) {
    return copy_string(e.what());
  }
}

// at::leaky_relu with a slope (tch 0.24 exposes only the default slope).
// A new tensor handle, or null with *error set (malloc'd).
void* kiln_leaky_relu(void* t, double negative_slope, char** error) {
  try {
    return new at::Tensor(at::leaky_relu(*static_cast<at::Tensor*>(t), negative_slope));
  } catch (const std::exception& e) {
    *error = copy_string(e.what());
    return nullptr;
  }
}

size_t kiln_stack_len(void* stack) { return as_stack(stack).size(); }

// What the value at `i` is: 0 none, 1 tensor, 2 double, 3 int, 4 bool,
// 5 int list, 6 double list, 7 anything else.
int kiln_stack_tag(void* stack, size_t i) {
  const auto& v = as_stack(stack).at(i);
  if (v.isNone()) return 0;
  if (v.isTensor()) return 1;
  if (v.isDouble()) return 2;
  if (v.isInt()) return 3;
  if (v.isBool()) return 4;
  if (v.isIntList()) return 5;
  if (v.isDoubleList()) return 6;
  return 7;
}

// A new handle on the tensor at `i` (the caller owns it).
void* kiln_stack_tensor(void* stack, size_t i) {
  return new at::Tensor(as_stack(stack).at(i).toTensor());
}

double kiln_stack_double(void* stack, size_t i) { return as_stack(stack).at(i).toDouble(); }
int64_t kiln_stack_int(void* stack, size_t i) { return as_stack(stack).at(i).toInt(); }
bool kiln_stack_bool(void* stack, size_t i) { return as_stack(stack).at(i).toBool(); }

// Copies up to `cap` elements of the int list at `i` into `out`; its length.
size_t kiln_stack_int_list(void* stack, size_t i, int64_t* out, size_t cap) {
  auto list = as_stack(stack).at(i).toIntList();
  for (size_t k = 0; k < list.size() && k < cap; ++k) out[k] = list.get(k);
  return list.size();
}

size_t kiln_stack_double_list(void* stack, size_t i, double* out, size_t cap) {
  auto list = as_stack(stack).at(i).toDoubleList();
  for (size_t k = 0; k < list.size() && k < cap; ++k) out[k] = list.get(k);
  return list.size();
}

void kiln_stack_clear(void* stack) { as_stack(stack).clear(); }

// Pushes a copy of the tensor handle `t` (the caller keeps its own).
void kiln_stack_push_tensor(void* stack, void* t) {
  as_stack(stack).emplace_back(*static_cast<at::Tensor*>(t));
}

}  // extern "C"
