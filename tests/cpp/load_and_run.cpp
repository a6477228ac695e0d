// load_and_run MODEL INPUTS OUTPUT
//
// Loads a TorchScript module (an fxtrace trace saved with torch.jit.save) with
// torch::jit::load, reads its positional inputs from INPUTS, runs forward, and writes the
// result to OUTPUT. The module runs as saved (its training flag is not touched) under
// torch::NoGradGuard.
//
// File formats (see docs/deploy.md):
//   INPUTS  written in Python by torch.save(tuple_of_tensors, path) — the zip format that
//           torch::pickle_load reads. A tuple or list is spread into positional arguments;
//           any other value is passed as the only argument.
//   OUTPUT  written here by torch::pickle_save(output) — readable in Python with
//           torch.load(path) (weights_only=True works: tensors, tuples, lists, dicts).
//
// Exit status: 0 on success; 1 on bad usage or unreadable files; 2 when the module raised
// (for example a failed fxtrace guard); the exception's text goes to stderr.
#include <torch/script.h>
#include <torch/serialize.h>

#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

namespace {

std::vector<char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::vector<char>& data) {
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error("cannot write " + path);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::vector<c10::IValue> as_arguments(const c10::IValue& value) {
  std::vector<c10::IValue> args;
  if (value.isTuple()) {
    for (const auto& v : value.toTupleRef().elements()) args.push_back(v);
  } else if (value.isList()) {
    for (const auto& v : value.toListRef()) args.push_back(v);
  } else {
    args.push_back(value);
  }
  return args;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: " << argv[0] << " MODEL INPUTS OUTPUT\n";
    return 1;
  }
  torch::jit::Module module;
  std::vector<c10::IValue> args;
  try {
    module = torch::jit::load(argv[1]);
    args = as_arguments(torch::pickle_load(read_bytes(argv[2])));
  } catch (const std::exception& e) {
    std::cerr << "load failed: " << e.what() << "\n";
    return 1;
  }
  c10::IValue output;
  try {
    torch::NoGradGuard no_grad;
    output = module.forward(args);
  } catch (const std::exception& e) {
    std::cerr << "forward raised: " << e.what() << "\n";
    return 2;
  }
  try {
    write_bytes(argv[3], torch::pickle_save(output));
  } catch (const std::exception& e) {
    std::cerr << "save failed: " << e.what() << "\n";
    return 1;
  }
  std::cout << "ok " << argv[1] << "\n";
  return 0;
}
