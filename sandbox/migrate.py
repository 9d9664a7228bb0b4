# filled by the migrations part
