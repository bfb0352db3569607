// Minimal TFLite Micro firmware for a tinydistill student.
//
// Copy model_data.cc, model_data.h and model_ops.h from the output folder of
// `tinydistill compress` next to this file, and build it with TFLite Micro
// (e.g. its Makefile or your vendor's TFLM package). Nothing here is specific
// to one model: the op list and the arena size come from the generated files.
#include <cstdint>
#include <cstring>

#include "model_data.h"  // g_model, g_model_len, g_model_arena_bytes (measured by TFLite Micro)
#include "model_ops.h"   // RegisterModelOps(): exactly the ops the model uses
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {
// The arena size tinydistill measured with the TFLite Micro interpreter (plus alignment).
alignas(16) uint8_t tensor_arena[g_model_arena_bytes];
}  // namespace

// Classify one input given as floats in the teacher's input range; returns the class index.
int Classify(const float* input, int input_len) {
  static ModelOpResolver resolver;
  static tflite::MicroInterpreter* interpreter = nullptr;
  if (interpreter == nullptr) {
    if (RegisterModelOps(resolver) != kTfLiteOk) return -1;
    static tflite::MicroInterpreter static_interpreter(tflite::GetModel(g_model), resolver, tensor_arena,
                                                       sizeof(tensor_arena));
    if (static_interpreter.AllocateTensors() != kTfLiteOk) return -1;  // arena too small or op missing
    interpreter = &static_interpreter;
  }
  // The student takes int8 input: quantise with the input tensor's scale and zero point.
  TfLiteTensor* in = interpreter->input(0);
  const float scale = in->params.scale;
  const int zero_point = in->params.zero_point;
  for (int i = 0; i < input_len; ++i) {
    int q = static_cast<int>(input[i] / scale + (input[i] >= 0 ? 0.5f : -0.5f)) + zero_point;
    in->data.int8[i] = static_cast<int8_t>(q < -128 ? -128 : (q > 127 ? 127 : q));
  }
  if (interpreter->Invoke() != kTfLiteOk) return -1;
  // int8 scores: the largest is the predicted class (dequantising does not change the order).
  TfLiteTensor* out = interpreter->output(0);
  int best = 0;
  for (int c = 1; c < out->dims->data[1]; ++c) {
    if (out->data.int8[c] > out->data.int8[best]) best = c;
  }
  return best;
}
