"""Sources every rule, threshold and piece of advice cites (from clinical-evidence.md).

Each source has a short label shown on cards and a reference. The status letter follows
clinical-evidence.md: V verified, C corroborated, B believed (primary text not read). A card
cites in one style only, :meth:`Source.cite` inside :func:`cited`: "(Butalia 2008)",
"(IWGDF/IDSA 2023, secondary; SVS/APMA/SVM 2016)": never a citation nested in another.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Source:
    label: str
    reference: str
    status: str = "V"

    def cite(self) -> str:
        """"Butalia 2008"; "IWGDF/IDSA 2023, secondary" (the claim was read in secondary sources
        only, or believed: status other than V)."""
        return self.label if self.status == "V" else f"{self.label}, secondary"

    def believed(self) -> Source:
        """The same source cited for a claim the review did not read in it (status B), e.g.
        Rybak 2020's loading dose, which is in the full guideline only."""
        return replace(self, status="B")


def cited(*sources: Source) -> str:
    """The one citation style on cards: " *(A; B, secondary)*" (markdown, leading space)."""
    return " *(" + "; ".join(dict.fromkeys(s.cite() for s in sources)) + ")*"


GUIDELINE_URL = "https://doi.org/10.1093/cid/ciad527"  # IWGDF/IDSA 2023, the main guideline

IWGDF_2023 = Source("IWGDF/IDSA 2023", "Senneville et al., Clin Infect Dis 2023, doi "
                    "10.1093/cid/ciad527", "B")
BUTALIA_2008 = Source("Butalia 2008", "Butalia et al., JAMA 2008;299:806-813")
DINH_2008 = Source("Dinh 2008", "Dinh, Abad, Safdar, Clin Infect Dis 2008;47:519-527")
LAVERY_2007 = Source("Lavery 2007", "Lavery et al., Diabetes Care 2007;30:270-274")
XU_2020 = Source("Xu 2020", "Xu et al., Int J Low Extrem Wounds 2020")
LLEWELLYN_2020 = Source("Llewellyn 2020", "Llewellyn et al., Eur J Radiol 2020;131:109215")
TIEGS_HEIDEN_2023 = Source("Tiegs-Heiden 2023", "Tiegs-Heiden et al., J Bone Jt Infect 2023;8:99")
EANM_2024 = Source("EANM 2024", "Eur J Nucl Med Mol Imaging 2024, "
                   "doi 10.1007/s00259-024-06693-y")
ACR_2019 = Source("ACR 2019", "ACR Appropriateness Criteria, Walker et al., J Am Coll "
                  "Radiol 2019;16(11S):S440-S450")
SVS_2016 = Source("SVS 2016", "SVS/APMA/SVM diabetic foot guideline, Hingorani et al. 2016")
JFAS_2016 = Source("JFAS 2016", "Heterotopic ossification after partial ray resection, "
                   "J Foot Ankle Surg 2016")
JFAS_2015 = Source("JFAS 2015", "Radiation therapy for recurrent HO prophylaxis after partial "
                   "metatarsal amputation, J Foot Ankle Surg 2015")
KAVANAGH = Source("Kavanagh JAPMA", "Kavanagh et al., JAPMA, doi 10.7547/22-055")
ORZEL_1985 = Source("Orzel 1985", "Orzel & Rudd, J Nucl Med 1985;26:125-132")
SHEHAB_2002 = Source("Shehab 2002", "Shehab, Elgazzar, Collier, J Nucl Med 2002;43:346-353")
SCIRE = Source("SCIRE HO review", "SCIRE Project, heterotopic ossification diagnosis")
CRP_KINETICS = Source("post-operative CRP kinetics", "LabCorp CRP test information "
                      "(peak about day 3, normal by about day 7)")
RYBAK_2020 = Source("Rybak 2020", "Rybak et al., vancomycin consensus, Am J Health-Syst Pharm "
                    "2020;77:835-864")
OPENFDA_NSAID = Source("openFDA indomethacin label", "FDA boxed warning: CV thrombotic "
                       "events, GI bleeding; contraindicated in the CABG setting")
HIP_HO_REVIEW = Source("PMC6500709", "HO after hip arthroplasty review (prophylaxis evidence)")
IWGDF_SEVERITY = Source("IWGDF/IDSA severity classification", "IWGDF/IDSA 2023 infection "
                        "severity (SIRS-type criteria)", "B")
GENTILI_REVIEW = Source("Gentili/Learch imaging review", "Gentili/Learch "
                        "diabetic-foot imaging review table; clinical-evidence.md A5.2, A5.4")
PRIOR_ANTIBIOTICS = Source("IWGDF/IDSA 2023 rationale", "prior antibiotics lower bone-culture "
                           "yield; clinical-evidence.md A5.8", "B")
GADOLINIUM = Source("gadolinium practice", "non-contrast MRI with eGFR < 30 or dialysis; "
                    "clinical-evidence.md A5.6", "B")
