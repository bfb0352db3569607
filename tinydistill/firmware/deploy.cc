// tinydistill's deployable image: what a product needs to run the student and nothing else (no I/O, no
// test data), linked against the board's flash and RAM so its size is the model's real cost in firmware.
// An application fills the input tensor and reads the output where the comments say.
#include "model_data.h"
#include "model_ops.h"
#include "tensorflow/lite/micro/micro_interpreter.h"

namespace {
alignas(16) uint8_t tensor_arena[g_model_arena_bytes];
}  // namespace

int main() {
  static ModelOpResolver resolver;
  if (RegisterModelOps(resolver) != kTfLiteOk) return 1;
  static tflite::MicroInterpreter interpreter(tflite::GetModel(g_model), resolver, tensor_arena, sizeof(tensor_arena));
  if (interpreter.AllocateTensors() != kTfLiteOk) return 1;
  while (true) {
    // the application writes interpreter.input(0)->data.int8 here
    if (interpreter.Invoke() != kTfLiteOk) return 1;
    // and reads interpreter.output(0)->data.int8 here
  }
}
