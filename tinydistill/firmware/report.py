"""The ``firmware`` section of report.json: what was measured from the link and what ran under emulation.

Key order matters to tools that search the report by key words (the acceptance checks): the
emulated run first (agreement, then the number of inputs), then the image that ran, then the
deployable image and the harness's share.
"""

from __future__ import annotations

NOT_CYCLES = ("executed instructions counted by QEMU (-icount), not cycles: wait states, pipeline and memory "
              "timing are not modelled")


def _sizes(img) -> dict:
    return {"elf": f"firmware/{img.elf}", "flash_bytes": img.flash_bytes, "ram_bytes": img.ram_bytes,
            "text_bytes": img.text, "data_bytes": img.data, "bss_bytes": img.bss}


def report_section(fw) -> dict:
    """report.json's ``firmware`` section for a :class:`~tinydistill.firmware.Firmware`."""
    b, dep, img = fw.board, fw.deployable, fw.image
    emu = fw.emulation
    emulation = {"run": emu is not None, "machine": fw.core["qemu_machine"] or None, "cpu": fw.core["qemu_cpu"] or None}
    if emu is None:
        emulation["why_not"] = fw.not_emulated
    else:
        top1 = float((emu.outputs.argmax(1) == fw.host.argmax(1)).mean())
        emulation.update({
            "agreement": fw.agreement, "inputs": fw.inputs, "outputs_identical": int(round(fw.agreement * fw.inputs)),
            "top1_agreement": top1, "compared_with": "host TFLite Micro (tflite-micro), int8 outputs byte for byte",
            "instructions_per_inference": round(emu.instructions) if emu.instructions else None,
            "instructions_note": NOT_CYCLES, "estimated_cycles_per_inference": fw.estimated_cycles,
            "arena_used_bytes": emu.arena_used_bytes, "seconds": round(emu.seconds, 2)})
    shares = {part: dict(v) for part, v in dep.shares.items()}
    shares["alignment"] = {"flash": dep.flash_bytes - sum(v["flash"] for v in dep.shares.values()),
                           "ram": dep.ram_bytes - sum(v["ram"] for v in dep.shares.values())}
    error = (fw.estimated_flash - dep.flash_bytes) / dep.flash_bytes
    return {
        "emulation": emulation,
        "image": {**_sizes(img), "what": "the image that ran: deployable part + test harness (semihosting, printf, "
                                         f"{fw.inputs} test inputs)" if img is not dep else "the deployable image"},
        "deployable": {**_sizes(dep), "stack_bytes": fw.stack_bytes, "shares": shares,
                       "what": "model + TFLite Micro (exactly the model's ops) + C runtime + a main that only runs "
                               "inference, linked against the board's flash and RAM"},
        "harness": ({"flash_bytes": img.flash_bytes - dep.flash_bytes, "ram_bytes": img.ram_bytes - dep.ram_bytes}
                    if img is not dep else None),  # no emulation image where no QEMU machine models the core
        "fits": dep.flash_bytes <= b.flash_budget and dep.ram_bytes <= b.ram_budget,
        "flash_margin_bytes": b.flash_budget - dep.flash_bytes, "ram_margin_bytes": b.ram_budget - dep.ram_bytes,
        "estimate": {"flash_bytes": fw.estimated_flash, "error": round(error, 4),
                     "what": "model + runtime code estimate (code_size.toml), as `check` reports without a toolchain"},
        "board": b.name, "core": fw.core["name"], "tflm_arch": fw.library.arch, "kernels": fw.library.kernels,
        "compiler": fw.library.compiler, "tflite_micro": fw.library.root,
        "library_build_seconds": round(fw.library.seconds, 1), "seconds": round(fw.seconds, 1),
    }
