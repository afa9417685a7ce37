//! Which SIMD instruction set the CPU kernels run on: the best the CPU has, or the one
//! `GLM_CPU_ISA` names (`avx512`, `avx2`, `scalar`) to measure or test a narrower path on a
//! wider CPU.

use std::sync::OnceLock;

/// The environment variable that picks an instruction set below the CPU's best.
pub const ENV: &str = "GLM_CPU_ISA";

/// An instruction set the kernels have a path for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Plain f32 code (what baseline x86-64 gives without runtime dispatch).
    Scalar,
    /// AVX2 + FMA (x86-64-v3).
    Avx2,
    /// AVX-512 F/BW/CD/DQ/VL (x86-64-v4).
    Avx512,
}

impl Isa {
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// The dispatcher for this instruction set, if this CPU has it.
    pub fn arch(self) -> Option<pulp::Arch> {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Isa::Scalar => Some(pulp::Arch::Scalar),
                Isa::Avx2 => pulp::x86::V3::try_new().map(pulp::Arch::V3),
                Isa::Avx512 => pulp::x86::V4::try_new().map(pulp::Arch::V4),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            // Other targets have one path: pulp's own choice.
            (self == Isa::Scalar).then(pulp::Arch::new)
        }
    }

    /// The widest instruction set this CPU has.
    pub fn best() -> Isa {
        [Isa::Avx512, Isa::Avx2]
            .into_iter()
            .find(|i| i.arch().is_some())
            .unwrap_or(Isa::Scalar)
    }

    /// Parses a `GLM_CPU_ISA` value and checks that this CPU has it.
    pub fn parse(value: &str) -> Result<Isa, String> {
        let isa = match value.trim().to_ascii_lowercase().as_str() {
            "avx512" | "avx-512" | "x86-64-v4" => Isa::Avx512,
            "avx2" | "x86-64-v3" => Isa::Avx2,
            "scalar" | "none" => Isa::Scalar,
            other => {
                return Err(format!(
                    "{ENV}={other:?} is not an instruction set (avx512, avx2, scalar)"
                ))
            }
        };
        if isa.arch().is_none() {
            return Err(format!(
                "{ENV}={value}: this CPU lacks {} (it has {})",
                isa.name(),
                Isa::best().name()
            ));
        }
        Ok(isa)
    }

    /// The instruction set `GLM_CPU_ISA` asks for, or the best one when it is unset.
    pub fn from_env() -> Result<Isa, String> {
        match std::env::var(ENV) {
            Ok(v) if !v.trim().is_empty() => Isa::parse(&v),
            _ => Ok(Isa::best()),
        }
    }
}

static SELECTED: OnceLock<Isa> = OnceLock::new();

/// The instruction set the kernels use in this process, fixed on first use: `GLM_CPU_ISA`
/// if valid, else the best the CPU has. [`check_env`] reports an invalid value at start-up.
pub fn selected() -> Isa {
    *SELECTED.get_or_init(|| Isa::from_env().unwrap_or_else(|_| Isa::best()))
}

/// [`selected`]'s dispatcher, detected once (every matmul call asks for it).
pub fn selected_arch() -> pulp::Arch {
    static ARCH: OnceLock<pulp::Arch> = OnceLock::new();
    *ARCH.get_or_init(|| selected().arch().unwrap_or_default())
}

/// Validates `GLM_CPU_ISA` (for start-up, before any kernel runs) and returns the choice.
pub fn check_env() -> Result<Isa, String> {
    let isa = Isa::from_env()?;
    Ok(*SELECTED.get_or_init(|| isa))
}
