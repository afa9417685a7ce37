//! Backends and what a load asks for. `cpu`: the hand-written SIMD kernels on host memory
//! (the fast path on CPUs). `reference`: the device-generic candle tensor path, on any candle
//! device; on the CPU device it proves in CI the logic the GPU runs. `cuda`: that tensor path on
//! an NVIDIA GPU with the hand-written CUDA kernels in place of the generic ops where one exists
//! (feature `cuda`).

pub mod cpu;
pub mod tensor;

use std::fmt;
use std::str::FromStr;

use crate::batch::ModelError;
use crate::weights::WeightDtype;

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Cpu,
    Reference,
    Cuda,
}

impl Backend {
    pub const NAMES: &'static str = "auto, cpu, reference, cuda";

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Reference => "reference",
            Backend::Cuda => "cuda",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `--device`: `cpu`, `cuda` (= `cuda:0`) or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(Self::Cuda(n)),
                _ => Err(format!("{other:?} is not cpu, cuda or cuda:N")),
            },
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceSpec {
    /// Whether this build can run the device at all (the `cuda` feature for GPUs).
    pub fn compiled_in(self) -> bool {
        match self {
            DeviceSpec::Cpu => true,
            DeviceSpec::Cuda(_) => cfg!(feature = "cuda"),
        }
    }

    /// Opens the candle device.
    pub fn open(self) -> Result<candle_core::Device, ModelError> {
        match self {
            DeviceSpec::Cpu => Ok(candle_core::Device::Cpu),
            DeviceSpec::Cuda(n) => {
                if !self.compiled_in() {
                    return Err(ModelError::Device(format!(
                        "{self}: this glm-server was built without CUDA support (cargo feature \
                         `cuda`); use an image built with it, or --device cpu"
                    )));
                }
                candle_core::Device::new_cuda(n)
                    .map_err(|e| ModelError::Device(format!("{self}: {e}")))
            }
        }
    }
}

/// `--backend` as given: `auto` picks `cpu` on the CPU and `cuda` on a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    #[default]
    Auto,
    Fixed(Backend),
}

impl FromStr for BackendChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Fixed(Backend::Cpu)),
            "reference" => Ok(Self::Fixed(Backend::Reference)),
            "cuda" => Ok(Self::Fixed(Backend::Cuda)),
            other => Err(format!("unknown backend {other:?} ({})", Backend::NAMES)),
        }
    }
}

/// What [`crate::load_model`] loads onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadOptions {
    pub backend: BackendChoice,
    pub device: DeviceSpec,
    pub dtype: WeightDtype,
}

impl LoadOptions {
    /// The backend to run, checked against the device: `cpu` needs the CPU, `cuda` a GPU;
    /// `reference` runs anywhere.
    pub fn resolve(&self) -> Result<Backend, ModelError> {
        let b = match (self.backend, self.device) {
            (BackendChoice::Auto, DeviceSpec::Cpu) => Backend::Cpu,
            (BackendChoice::Auto, DeviceSpec::Cuda(_)) => Backend::Cuda,
            (BackendChoice::Fixed(b), _) => b,
        };
        match (b, self.device) {
            (Backend::Cpu, DeviceSpec::Cuda(_)) => Err(ModelError::Device(format!(
                "backend cpu runs on the CPU, not on {}; use --backend cuda or reference",
                self.device
            ))),
            (Backend::Cuda, DeviceSpec::Cpu) => Err(ModelError::Device(
                "backend cuda needs --device cuda or cuda:N".into(),
            )),
            (Backend::Reference | Backend::Cuda, _) if self.dtype == WeightDtype::Fp8 => {
                Err(ModelError::Device(format!(
                    "--dtype fp8 keeps weights 8-bit on the cpu backend only; backend {b} \
                     computes in bf16/f32 (FP8 checkpoints load there with --dtype auto)"
                )))
            }
            // The CPU kernels' instruction set: a bad GLM_CPU_ISA is refused here, at start.
            (Backend::Cpu, _) => crate::kernels::isa::check_env()
                .map(|_| b)
                .map_err(ModelError::Device),
            _ => Ok(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_backends_parse_and_resolve() {
        assert_eq!("cpu".parse(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceSpec::Cuda(3)));
        assert!("gpu".parse::<DeviceSpec>().unwrap_err().contains("gpu"));
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
        let opts = |b: &str, d: &str| LoadOptions {
            backend: b.parse().unwrap(),
            device: d.parse().unwrap(),
            dtype: WeightDtype::Auto,
        };
        let table = [
            ("auto", "cpu", Ok(Backend::Cpu)),
            ("auto", "cuda:1", Ok(Backend::Cuda)),
            ("reference", "cpu", Ok(Backend::Reference)),
            ("reference", "cuda", Ok(Backend::Reference)),
            ("cpu", "cuda", Err("runs on the CPU")),
            ("cuda", "cpu", Err("needs --device cuda")),
        ];
        for (b, d, want) in table {
            match (opts(b, d).resolve(), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, w, "{b} on {d}"),
                (Err(e), Err(needle)) => {
                    assert_eq!(e.kind(), "device");
                    assert!(e.to_string().contains(needle), "{e}");
                }
                (got, want) => panic!("{b} on {d}: {got:?}, want {want:?}"),
            }
        }
        assert!("tpu"
            .parse::<BackendChoice>()
            .unwrap_err()
            .contains("reference"));
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_cpu_build_refuses_a_gpu_with_a_reason() {
        let e = DeviceSpec::Cuda(0).open().unwrap_err();
        assert_eq!(e.kind(), "device");
        assert!(e.to_string().contains("feature `cuda`"), "{e}");
    }
}
